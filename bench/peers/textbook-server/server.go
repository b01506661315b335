// The textbook's first server (seed/tcp-server-textbook.txt), kept as written: one goroutine per
// connection, 512-byte reads, "Received data: " and the whole buffer printed. The only change:
// the listen address may be given as the first argument, so the benchmark can pick the port.
package main

import (
	"fmt"
	"net"
	"os"
)

func main() {
	fmt.Println("Starting the server ...")
	address := "localhost:50000"
	if len(os.Args) > 1 {
		address = os.Args[1]
	}
	// create listener:
	listener, err := net.Listen("tcp", address)
	if err != nil {
		fmt.Println("Error listening", err.Error())
		return // terminate program
	}
	// listen and accept connections from clients:
	for {
		conn, err := listener.Accept()
		if err != nil {
			return // terminate program
		}
		go doServerStuff(conn)
	}
}

func doServerStuff(conn net.Conn) {
	for {
		buf := make([]byte, 512)
		_, err := conn.Read(buf)
		if err != nil {
			fmt.Println("Error reading", err.Error())
			return // terminate program
		}
		fmt.Printf("Received data: %v", string(buf))
	}
}
