// Command dot-check validates Graphviz DOT text read on standard input with Graphviz itself
// (go-graphviz: Graphviz compiled to WebAssembly, no cgo), so the tests check the DOT output of
// `irsa-doctor audit trust -o dot` against the real engine rather than a grammar of our own.
// It parses the text, lays it out with `dot` and renders it (so a graph Graphviz cannot lay out
// fails too), then prints {"nodes":N,"edges":M}; on any failure it prints the error on standard
// error and exits 1.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/goccy/go-graphviz"
)

func main() {
	c, err := check(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "dot-check:", err)
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(c)
}

// counts is the one line printed on success.
type counts struct {
	Nodes int `json:"nodes"`
	Edges int `json:"edges"`
}

func check(ctx context.Context) (*counts, error) {
	src, err := io.ReadAll(os.Stdin)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(src)) == 0 {
		return nil, errors.New("empty input: no DOT graph on standard input")
	}
	gv, err := graphviz.New(ctx)
	if err != nil {
		return nil, err
	}
	defer gv.Close()
	graph, err := graphviz.ParseBytes(src)
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if graph == nil { // Graphviz read no graph and said nothing (e.g. only comments)
		return nil, errors.New("no DOT graph in the input")
	}
	defer graph.Close()
	nodes, err := graph.NodeNum()
	if err != nil {
		return nil, err
	}
	edges, err := graph.EdgeNum()
	if err != nil {
		return nil, err
	}
	if err := gv.SetLayout(graphviz.DOT).Render(ctx, graph, graphviz.SVG, io.Discard); err != nil {
		return nil, fmt.Errorf("layout/render: %w", err)
	}
	return &counts{Nodes: nodes, Edges: edges}, nil
}
