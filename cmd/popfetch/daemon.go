package main

import (
	"context"
	"fmt"
)

func (g *globals) daemon(ctx context.Context, args []string) int {
	fmt.Fprintln(g.stderr, "popfetch run: not yet wired")
	return exitUsage
}
func (g *globals) now(ctx context.Context, args []string) int    { return g.daemon(ctx, args) }
func (g *globals) status(ctx context.Context, args []string) int { return g.daemon(ctx, args) }
