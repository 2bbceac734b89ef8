package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sluice-dev/sluice/api"
	"github.com/sluice-dev/sluice/api/apiclient"
	"github.com/sluice-dev/sluice/routing/v1/manifest"
)

func newApplyCmd(g *globals) *cobra.Command {
	var files []string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR|- [-f ...]",
		Short: "Create or update Services, Configurations and Routes from YAML or JSON",
		Long: `apply sends multi-document YAML or JSON to sluice. All files of one apply are admitted
together or not at all: if any document is invalid, nothing changes and the error names the
file, the document and the field.

A directory applies its *.yaml, *.yml and *.json files (not subdirectories) in name order.
"-" reads standard input.`,
		Example: `  # Deploy a service
  sluice apply -f hello.yaml

  # Apply a directory, and a document from stdin, as one batch
  cat route.yaml | sluice apply -f ./services -f -

  # Check what would change without changing anything
  sluice apply -f hello.yaml --dry-run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(files) == 0 {
				return fmt.Errorf("no input: give -f FILE, -f DIR or -f -")
			}
			in, err := readInputs(files, g.stdin)
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			res, err := c.Apply(cmd.Context(), in, dryRun)
			if err != nil {
				return err
			}
			printApply(cmd.OutOrStdout(), res)
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "file, directory or - for stdin (repeatable)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "validate and report what would change, changing nothing")
	return cmd
}

// readInputs expands -f values into files, reading everything before anything is sent so that a
// missing file fails the whole apply.
func readInputs(paths []string, stdin io.Reader) ([]apiclient.File, error) {
	var out []apiclient.File
	for _, p := range paths {
		if p == "-" {
			data, err := io.ReadAll(stdin)
			if err != nil {
				return nil, fmt.Errorf("read stdin: %w", err)
			}
			out = append(out, apiclient.File{Name: "stdin", Data: data})
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("-f %s: %w", p, err)
		}
		if !fi.IsDir() {
			data, err := os.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("-f %s: %w", p, err)
			}
			out = append(out, apiclient.File{Name: p, Data: data})
			continue
		}
		names, err := manifest.Files(p)
		if err != nil {
			return nil, err
		}
		if len(names) == 0 {
			return nil, fmt.Errorf("-f %s: no .yaml, .yml or .json files in the directory", p)
		}
		for _, n := range names {
			data, err := os.ReadFile(n)
			if err != nil {
				return nil, fmt.Errorf("-f %s: %w", p, err)
			}
			out = append(out, apiclient.File{Name: n, Data: data})
		}
	}
	return out, nil
}

func printApply(w io.Writer, res *api.ApplyResponse) {
	suffix := ""
	if res.DryRun {
		suffix = " (dry run)"
	}
	for _, r := range res.Results {
		fmt.Fprintf(w, "%s.serving.knative.dev/%s %s%s\n", strings.ToLower(r.Kind), r.Name, r.Action, suffix)
	}
	for _, r := range res.Revisions {
		fmt.Fprintf(w, "revision %s %s%s\n", r.Name, r.Action, suffix)
	}
}
