// floor: what the server alone and the disk alone cost, the floors a
// popfetch run is measured against (doc/bench/README.md).
//
//	floor server ADDR N [CAFILE]   pipelined RETR 1..N, bodies discarded (over implicit TLS verified with CAFILE if given)
//	floor disk DIR N SIZE WORKERS BATCH [MODE]   files written by WORKERS, renamed into new/ in batches, one fsync of new/ per batch
//
// MODE says how the files are made durable before their batch is renamed:
// fsync (the default) one fsync each, by the worker that wrote it;
// syncfs one syncfs(2) per batch, then an fsync of tmp/ for the device
// flush and a sync_file_range(2) writeback check of each file, as
// popfetch's shared file sync does (internal/durable FileSync); none no
// file sync at all (not durable: the floor below both).
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
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
		var c net.Conn
		var err error
		if len(os.Args) > 4 {
			pem, rerr := os.ReadFile(os.Args[4])
			if rerr != nil {
				panic(rerr)
			}
			roots := x509.NewCertPool()
			roots.AppendCertsFromPEM(pem)
			host, _, _ := net.SplitHostPort(os.Args[2])
			c, err = tls.Dial("tcp", os.Args[2], &tls.Config{RootCAs: roots, ServerName: host})
		} else {
			c, err = net.Dial("tcp", os.Args[2])
		}
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
		mode := "fsync"
		if len(os.Args) > 7 {
			mode = os.Args[7]
		}
		if mode != "fsync" && mode != "syncfs" && mode != "none" {
			panic("MODE is fsync, syncfs or none")
		}
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
			open := make([]int, end-start) // syncfs: the batch's files, checked after the sync
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
						switch mode {
						case "fsync":
							if err := unix.Fsync(fd); err != nil {
								panic(err)
							}
						case "syncfs":
							open[i-start] = fd
							continue
						}
						unix.Close(fd)
					}
				}()
			}
			for i := start; i < end; i++ {
				jobs <- i
			}
			close(jobs)
			wg.Wait()
			if mode == "syncfs" {
				if err := unix.Syncfs(tmp); err != nil {
					panic(err)
				}
				if err := unix.Fsync(tmp); err != nil {
					panic(err)
				}
				for _, fd := range open {
					if err := unix.SyncFileRange(fd, 0, 0, unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER); err != nil {
						panic(err)
					}
					unix.Close(fd)
				}
			}
			for i := start; i < end; i++ {
				if err := unix.Renameat2(tmp, fmt.Sprint(i), nw, fmt.Sprint(i), unix.RENAME_NOREPLACE); err != nil {
					panic(err)
				}
			}
			unix.Fsync(nw)
		}
		fmt.Printf("disk: %d files of %d bytes, %d workers, batches of %d, %s: %v\n", n, size, workers, batch, mode, time.Since(t0))
	}
}
