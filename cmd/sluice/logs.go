package main

import (
	"github.com/spf13/cobra"

	v1 "github.com/sluice-dev/sluice/routing/v1"
)

func newLogsCmd(g *globals) *cobra.Command {
	var namespace string
	var follow bool
	var tail int
	cmd := &cobra.Command{
		Use:   "logs REVISION",
		Short: "Print the output of a local revision's instances",
		Long: `logs prints what the instances of a revision wrote to stdout and stderr. It works for
revisions sluice runs as local processes (a container with a command); each instance keeps
its own log file, capped in size (10 MiB by default) and rotated once.

When the revision has several instances, or with -f, each line starts with the instance's
name: [hello-00001-2] ... With -f, logs keeps printing new lines, including those of
instances started later, until interrupted.`,
		Example: `  # Everything revision hello-00001 has printed
  sluice logs hello-00001

  # The last 20 lines of each instance, then follow new output
  sluice logs hello-00001 --tail 20 -f

  # A revision in another namespace
  sluice logs shop-00003 -n prod`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			return c.Logs(cmd.Context(), namespace, args[0], follow, tail, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", v1.DefaultNamespace, "namespace")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines until interrupted")
	cmd.Flags().IntVar(&tail, "tail", -1, "lines of each instance's past output to print; -1 for all")
	return cmd
}
