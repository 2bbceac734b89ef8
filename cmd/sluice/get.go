package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	v1 "github.com/sluice-dev/sluice/routing/v1"
)

// resourceAliases maps what users type (kubectl's and kn's names) to API resources.
var resourceAliases = map[string]string{
	"services": "services", "service": "services", "ksvc": "services", "kservice": "services",
	"revisions": "revisions", "revision": "revisions", "rev": "revisions",
	"routes": "routes", "route": "routes", "rt": "routes",
	"configurations": "configurations", "configuration": "configurations", "config": "configurations", "cfg": "configurations",
}

func resourceOf(arg string) (string, error) {
	r, ok := resourceAliases[strings.ToLower(arg)]
	if !ok {
		return "", fmt.Errorf("unknown resource type %q: want services (ksvc), revisions (rev), routes or configurations (config)", arg)
	}
	return r, nil
}

func newGetCmd(g *globals) *cobra.Command {
	var namespace, output string
	var all bool
	cmd := &cobra.Command{
		Use:   "get services|revisions|routes|configurations [NAME]",
		Short: "Show Services, Revisions, Routes or Configurations and their status",
		Long: `get lists objects as a table like "kubectl get ksvc", or prints them whole with their status
with -o yaml or -o json.

Resource types: services (service, ksvc), revisions (revision, rev), routes (route),
configurations (configuration, config).`,
		Example: `  # Services in the default namespace, with URL and readiness
  sluice get ksvc

  # Every revision in every namespace
  sluice get revisions -A

  # One service with its resolved traffic, as YAML
  sluice get service hello -o yaml`,
		Args:      cobra.RangeArgs(1, 2),
		ValidArgs: []string{"services", "revisions", "routes", "configurations"},
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := resourceOf(args[0])
			if err != nil {
				return err
			}
			switch output {
			case "", "yaml", "json":
			default:
				return fmt.Errorf("-o %s: want yaml or json (or nothing, for a table)", output)
			}
			if all && len(args) == 2 {
				return fmt.Errorf("a NAME and -A do not go together: a name is looked up in one namespace (-n)")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if len(args) == 2 {
				obj, err := c.Get(cmd.Context(), res, namespace, args[1])
				if err != nil {
					return err
				}
				if output != "" {
					return printObject(out, output, obj)
				}
				return printTable(out, res, []json.RawMessage{obj}, false)
			}
			ns := namespace
			if all {
				ns = ""
			}
			items, err := c.List(cmd.Context(), res, ns)
			if err != nil {
				return err
			}
			if output != "" {
				list := map[string]any{"apiVersion": "v1", "kind": "List", "items": items}
				data, err := json.Marshal(list)
				if err != nil {
					return fmt.Errorf("encode list: %w", err)
				}
				return printObject(out, output, data)
			}
			if len(items) == 0 {
				where := "namespace " + ns
				if ns == "" {
					where = "any namespace"
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "No %s found in %s.\n", res, where)
				return nil
			}
			return printTable(out, res, items, all)
		},
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", v1.DefaultNamespace, "namespace")
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "list across all namespaces")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: yaml or json (default: a table)")
	return cmd
}

func printObject(w io.Writer, format string, data json.RawMessage) error {
	if format == "json" {
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			return fmt.Errorf("decode answer: %w", err)
		}
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return fmt.Errorf("encode json: %w", err)
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	b, err := yaml.JSONToYAML(data)
	if err != nil {
		return fmt.Errorf("encode yaml: %w", err)
	}
	_, err = w.Write(b)
	return err
}

// printTable prints items the way kubectl prints Knative objects.
func printTable(w io.Writer, resource string, items []json.RawMessage, withNamespace bool) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	header := map[string]string{
		"services":       "NAME\tURL\tLATESTCREATED\tLATESTREADY\tREADY\tREASON",
		"configurations": "NAME\tLATESTCREATED\tLATESTREADY\tREADY\tREASON",
		"routes":         "NAME\tURL\tREADY\tREASON",
		"revisions":      "NAME\tCONFIG NAME\tGENERATION\tREADY\tREASON\tDESIRED\tACTUAL\tINSTANCES READY\tRESTARTS\tMODE\tSCALE REASON",
	}[resource]
	if withNamespace {
		header = "NAMESPACE\t" + header
	}
	fmt.Fprintln(tw, header)
	for _, it := range items {
		var row []string
		var meta struct {
			Metadata struct {
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(it, &meta); err != nil {
			return fmt.Errorf("decode %s: %w", resource, err)
		}
		switch resource {
		case "services":
			var o v1.Service
			if err := json.Unmarshal(it, &o); err != nil {
				return fmt.Errorf("decode service: %w", err)
			}
			ready, reason := readiness(o.Status.Conditions)
			row = []string{o.Name, o.Status.URL, o.Status.LatestCreatedRevisionName, o.Status.LatestReadyRevisionName, ready, reason}
		case "configurations":
			var o v1.Configuration
			if err := json.Unmarshal(it, &o); err != nil {
				return fmt.Errorf("decode configuration: %w", err)
			}
			ready, reason := readiness(o.Status.Conditions)
			row = []string{o.Name, o.Status.LatestCreatedRevisionName, o.Status.LatestReadyRevisionName, ready, reason}
		case "routes":
			var o v1.Route
			if err := json.Unmarshal(it, &o); err != nil {
				return fmt.Errorf("decode route: %w", err)
			}
			ready, reason := readiness(o.Status.Conditions)
			row = []string{o.Name, o.Status.URL, ready, reason}
		case "revisions":
			var o v1.Revision
			if err := json.Unmarshal(it, &o); err != nil {
				return fmt.Errorf("decode revision: %w", err)
			}
			ready, reason := readiness(o.Status.Conditions)
			row = []string{o.Name, o.Labels[v1.LabelConfiguration], o.Labels[v1.LabelConfigurationGeneration], ready, reason}
			row = append(row, scaleColumns(o.Status)...)
		}
		if withNamespace {
			row = append([]string{meta.Metadata.Namespace}, row...)
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}

// scaleColumns are a revision's scale, "-" for one sluice does not scale (static endpoints).
func scaleColumns(st v1.RevisionStatus) []string {
	if st.Scale == nil {
		return []string{"-", "-", "-", "-", "-", ""}
	}
	n := func(p *int32) string {
		if p == nil {
			return "-"
		}
		return strconv.Itoa(int(*p))
	}
	return []string{n(st.DesiredReplicas), n(st.ActualReplicas), strconv.Itoa(int(st.Scale.ReadyReplicas)), strconv.Itoa(int(st.Scale.Restarts)), st.Scale.Mode, st.Scale.Reason}
}

// readiness is the Ready condition's status and reason; Unknown until a reconcile has set it.
func readiness(cs []v1.Condition) (string, string) {
	for _, c := range cs {
		if c.Type == v1.ConditionReady {
			return string(c.Status), c.Reason
		}
	}
	return "Unknown", ""
}
