// floor: what the server alone and the disk alone cost, the floors a
// popfetch run is measured against (doc/bench/README.md).
//
//	floor server ADDR N     pipelined RETR 1..N, bodies discarded
//	floor disk DIR N SIZE WORKERS BATCH   files fsynced by WORKERS, renamed into new/ in batches, one fsync of new/ per batch
package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	switch os.Args[1] {
	case "server":
		n, _ := strconv.Atoi(os.Args[3])
		t0 := time.Now()
		c, err := net.Dial("tcp", os.Args[2])
		if err != nil {
			panic(err)
		}
		r := bufio.NewReaderSize(c, 64<<10)
		line := func() string {
			l, err := r.ReadString('\n')
			if err != nil {
				panic(err)
			}
			return l
		}
		line()
		fmt.Fprintf(c, "USER bench\r\nPASS bench\r\n")
		line()
		line()
		go func() {
			w := bufio.NewWriter(c)
			for i := 1; i <= n; i++ {
				fmt.Fprintf(w, "RETR %d\r\n", i)
			}
			w.Flush()
		}()
		bytes := 0
		for i := 1; i <= n; i++ {
			line()
			for {
				l, err := r.ReadSlice('\n')
				if err != nil && err != bufio.ErrBufferFull {
					panic(err)
				}
				bytes += len(l)
				if string(l) == ".\r\n" {
					break
				}
			}
		}
		fmt.Fprintf(c, "QUIT\r\n")
		fmt.Printf("server: %d messages, %d bytes in %v\n", n, bytes, time.Since(t0))
	case "disk":
		dir := os.Args[2]
		n, _ := strconv.Atoi(os.Args[3])
		size, _ := strconv.Atoi(os.Args[4])
		workers, _ := strconv.Atoi(os.Args[5])
		batch, _ := strconv.Atoi(os.Args[6])
		for _, d := range []string{"tmp", "new", "cur"} {
			os.MkdirAll(filepath.Join(dir, d), 0o700)
		}
		tmp, _ := unix.Open(filepath.Join(dir, "tmp"), unix.O_RDONLY|unix.O_DIRECTORY, 0)
		nw, _ := unix.Open(filepath.Join(dir, "new"), unix.O_RDONLY|unix.O_DIRECTORY, 0)
		data := make([]byte, size)
		for i := range data {
			data[i] = 'a' + byte(i%26)
			if i%70 == 69 {
				data[i] = '\n'
			}
		}
		t0 := time.Now()
		for start := 0; start < n; start += batch {
			end := min(start+batch, n)
			var wg sync.WaitGroup
			jobs := make(chan int)
			for range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range jobs {
						fd, err := unix.Openat(tmp, fmt.Sprint(i), unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o600)
						if err != nil {
							panic(err)
						}
						unix.Write(fd, data)
						unix.Fsync(fd)
						unix.Close(fd)
					}
				}()
			}
			for i := start; i < end; i++ {
				jobs <- i
			}
			close(jobs)
			wg.Wait()
			for i := start; i < end; i++ {
				if err := unix.Renameat2(tmp, fmt.Sprint(i), nw, fmt.Sprint(i), unix.RENAME_NOREPLACE); err != nil {
					panic(err)
				}
			}
			unix.Fsync(nw)
		}
		fmt.Printf("disk: %d files of %d bytes, %d workers, batches of %d: %v\n", n, size, workers, batch, time.Since(t0))
	}
}
