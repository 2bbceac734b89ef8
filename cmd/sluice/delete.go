package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	v1 "github.com/sluice-dev/sluice/routing/v1"
)

func newDeleteCmd(g *globals) *cobra.Command {
	var namespace string
	cmd := &cobra.Command{
		Use:   "delete service|route|configuration|revision NAME",
		Short: "Delete a Service (with its Configuration, Route and Revisions), a Route or a Configuration",
		Long: `delete removes an object and everything it owns: deleting a Service deletes its Configuration,
Route and Revisions. A Route or Configuration owned by a Service cannot be deleted on its own:
delete the Service. A Revision can be deleted once no Route sends it traffic or names it.`,
		Example: `  # Delete service hello and its revisions
  sluice delete service hello

  # Delete a standalone route in namespace prod
  sluice delete route shop -n prod

  # Delete an old revision that no longer gets traffic
  sluice delete revision hello-00001`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := resourceOf(args[0])
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			out, err := c.Delete(cmd.Context(), res, namespace, args[1])
			if err != nil {
				return err
			}
			for _, d := range out.Deleted {
				fmt.Fprintf(cmd.OutOrStdout(), "%s.serving.knative.dev/%s deleted\n", strings.ToLower(d.Kind), d.Name)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", v1.DefaultNamespace, "namespace")
	return cmd
}
