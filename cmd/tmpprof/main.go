package main

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	"github.com/neurosurg/neurosurg/formats/hfdir"
	"github.com/neurosurg/neurosurg/model"
)

func main() {
	c, err := hfdir.Open("/tmp/q05")
	if err != nil {
		panic(err)
	}
	m, err := model.Load(c.ConfigJSON, c)
	if err != nil {
		panic(err)
	}
	n := 512
	b := 1
	if len(os.Args) > 1 && os.Args[1] == "8" {
		n, b = 128, 8
	}
	seq := func(n, salt int) []int32 {
		s := make([]int32, n)
		for i := range s {
			s[i] = int32((i*7919 + salt*104729) % 151936)
		}
		return s
	}
	var batch [][]int32
	for i := 0; i < b; i++ {
		batch = append(batch, seq(n, i))
	}
	m.Forward(context.Background(), batch, model.ForwardOptions{})
	f, _ := os.Create("/tmp/one.prof")
	pprof.StartCPUProfile(f)
	t0 := time.Now()
	for i := 0; i < 3; i++ {
		m.Forward(context.Background(), batch, model.ForwardOptions{})
	}
	pprof.StopCPUProfile()
	fmt.Printf("%.1f tok/s\n", float64(3*n*b)/time.Since(t0).Seconds())
}
