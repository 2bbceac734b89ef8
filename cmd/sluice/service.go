package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/api"
	"github.com/sluice-dev/sluice/api/apiclient"
	v1 "github.com/sluice-dev/sluice/routing/v1"
	"github.com/sluice-dev/sluice/traffic"
)

func newServiceCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "service",
		Aliases: []string{"ksvc"},
		Short:   "Change a Service's traffic the way kn does",
	}
	cmd.AddCommand(newServiceUpdateCmd(g))
	return cmd
}

func newServiceUpdateCmd(g *globals) *cobra.Command {
	var namespace string
	var f traffic.Flags
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "update NAME --traffic REV=PERCENT ... | --tag REV=TAG ... | --untag TAG ...",
		Short: "Split traffic between revisions and name them with tags",
		Long: `update changes a Service's spec.traffic with kn's flags and semantics, then applies it.

  --traffic REV=PERCENT   REV is a revision name, a tag, or @latest (the latest ready revision).
                          The --traffic flags given are the whole split: they must sum to 100,
                          and revisions not named get 0%.
  --tag REV=TAG           give REV (a revision name or @latest) a tag, and with it the URL
                          TAG-NAME.NAMESPACE.DOMAIN; a revision without traffic gets a 0% entry.
  --untag TAG             remove a tag. Untagging happens first, then tagging, then percents;
                          entries left with 0% and no tag are dropped.

The change is applied only to the Service as it was read (its resourceVersion): when another
apply changes the Service in between, update reads it again and redoes the change on top, up to
3 times, so neither change is lost.`,
		Example: `  # Blue-green: everything to the first revision, then cut over to the latest
  sluice service update hello --traffic hello-00001=100
  sluice service update hello --traffic @latest=100

  # Canary: 80/20 between the current revision and the latest
  sluice service update hello --traffic hello-00001=80 --traffic @latest=20

  # Tags v1 and v2 get their own URLs (v1-hello.default.example.com); split by tag
  sluice service update hello --tag hello-00001=v1 --tag hello-00002=v2 --traffic v1=50 --traffic v2=50

  # Move a tag
  sluice service update hello --untag v2 --tag @latest=v2`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.Empty() {
				return fmt.Errorf("nothing to update: give --traffic, --tag or --untag")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			// The change is applied only to the Service as it was read (its resourceVersion):
			// when an apply lands in between, read it again and redo the change, as kn does.
			for attempt := 1; ; attempt++ {
				err := updateService(cmd, c, namespace, args[0], f, dryRun)
				var conflict *api.StatusError
				if attempt < maxUpdateAttempts && errors.As(err, &conflict) && conflict.Code == http.StatusConflict {
					continue
				}
				return err
			}
		},
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", v1.DefaultNamespace, "namespace")
	cmd.Flags().StringSliceVar(&f.Traffic, "traffic", nil, "REV=PERCENT: REV is a revision, a tag or @latest (repeatable)")
	cmd.Flags().StringSliceVar(&f.Tags, "tag", nil, "REV=TAG: REV is a revision or @latest (repeatable)")
	cmd.Flags().StringSliceVar(&f.Untag, "untag", nil, "TAG to remove (repeatable)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "validate and show the traffic, changing nothing")
	return cmd
}

// maxUpdateAttempts bounds the read-change-apply rounds of service update when other applies
// keep changing the Service in between (kn makes 3 too).
const maxUpdateAttempts = 3

// updateService reads Service namespace/name, computes its new traffic from f and applies it on
// the condition that the Service is still the one read.
func updateService(cmd *cobra.Command, c *apiclient.Client, namespace, name string, f traffic.Flags, dryRun bool) error {
	svc, err := c.GetService(cmd.Context(), namespace, name)
	if err != nil {
		return err
	}
	revs, err := c.ListRevisions(cmd.Context(), namespace)
	if err != nil {
		return err
	}
	var names []string
	for _, r := range revs {
		if r.Labels[v1.LabelConfiguration] == svc.Name {
			names = append(names, r.Name)
		}
	}
	tt, err := traffic.ApplyFlags(svc.Spec.Traffic, names, f)
	if err != nil {
		return fmt.Errorf("service %s/%s: %w", namespace, svc.Name, err)
	}
	data, err := json.Marshal(updated(svc, tt))
	if err != nil {
		return fmt.Errorf("encode service %s/%s: %w", namespace, svc.Name, err)
	}
	res, err := c.Apply(cmd.Context(), []apiclient.File{{Name: "service update " + svc.Name, Data: data}}, dryRun)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	printApply(out, res)
	if dir := svc.Annotations[v1.AnnotationAppliedFrom]; dir != "" {
		fmt.Fprintf(cmd.ErrOrStderr(), "note: %s/%s is managed by the directory %s that sluice serve --watch applies: its next change there puts the file's traffic back; change the file to keep this\n",
			svc.Namespace, svc.Name, dir)
	}
	return printTraffic(out, svc, tt)
}

// updated is what the user would write to get svc with traffic tt: the spec and the user's own
// metadata, without status or what the server fills in, but with the resourceVersion read, so
// that the apply fails rather than overwrite a change made since.
func updated(svc *v1.Service, tt []v1.TrafficTarget) *v1.Service {
	out := &v1.Service{
		TypeMeta: metav1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindService},
		ObjectMeta: metav1.ObjectMeta{
			Name:            svc.Name,
			Namespace:       svc.Namespace,
			Labels:          svc.Labels,
			Annotations:     svc.Annotations,
			ResourceVersion: svc.ResourceVersion,
		},
		Spec: svc.Spec,
	}
	out.Spec.Traffic = tt
	return out
}

func printTraffic(w io.Writer, svc *v1.Service, tt []v1.TrafficTarget) error {
	latest := svc.Status.LatestReadyRevisionName
	if latest == "" {
		latest = svc.Status.LatestCreatedRevisionName
	}
	fmt.Fprintf(w, "\nTraffic of Service %s/%s:\n", svc.Namespace, svc.Name)
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "  PERCENT\tREVISION\tTAG")
	for _, t := range tt {
		rev := t.RevisionName
		if t.LatestRevision != nil && *t.LatestRevision {
			rev = traffic.Latest
			if latest != "" {
				rev += " (" + latest + ")"
			}
		}
		var pct int64
		if t.Percent != nil {
			pct = *t.Percent
		}
		fmt.Fprintln(tw, strings.Join([]string{fmt.Sprintf("  %d%%", pct), rev, t.Tag}, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write traffic: %w", err)
	}
	return nil
}
