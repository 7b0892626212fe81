// crd-check decodes the custom resources of rendered manifests strictly into the API types
// their operators compile against, so that a field the operator does not know (a misspelt
// key, a field of another version) fails here instead of being dropped by the API server's
// pruning or refused at install time.
//
//	helm template dedup helm/dedup | crd-check          (or: crd-check rendered.yaml ...)
//
// Every document whose group is one of the operators' (ray.io, monitoring.coreos.com) must be
// one of the kinds below; other documents (the core kinds) are counted and left to the
// Kubernetes schema check. It exits 1 naming each bad document and field, 2 on unreadable
// input.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	rayv1 "github.com/ray-project/kuberay/ray-operator/apis/ray/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// checkedGroups are the API groups whose documents must decode into a known type.
var checkedGroups = []string{"ray.io", "monitoring.coreos.com"}

// knownTypes gives a fresh value of the real type of each custom resource the chart may
// render (a PodMonitor too, should the jobs be scraped directly one day).
var knownTypes = map[string]func() any{
	"ray.io/v1 RayCluster":                    func() any { return &rayv1.RayCluster{} },
	"monitoring.coreos.com/v1 ServiceMonitor": func() any { return &monitoringv1.ServiceMonitor{} },
	"monitoring.coreos.com/v1 PodMonitor":     func() any { return &monitoringv1.PodMonitor{} },
	"monitoring.coreos.com/v1 PrometheusRule": func() any { return &monitoringv1.PrometheusRule{} },
}

type header struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
}

var sourceComment = regexp.MustCompile(`(?m)^# Source: (\S+)`)

// document is one YAML document of an input and where it came from.
type document struct {
	where string // input file and position, and helm's "# Source:" template when present
	body  []byte
}

func split(name string, r io.Reader) ([]document, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var docs []document
	for index := 1; ; index++ {
		body, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		where := fmt.Sprintf("%s document %d", name, index)
		if source := sourceComment.FindSubmatch(body); source != nil {
			where += fmt.Sprintf(" (%s)", source[1])
		}
		docs = append(docs, document{where, body})
	}
}

func inCheckedGroup(apiVersion string) bool {
	group, _, found := strings.Cut(apiVersion, "/")
	if !found {
		return false // a core kind ("v1")
	}
	for _, checked := range checkedGroups {
		if group == checked {
			return true
		}
	}
	return false
}

// check returns "" for a document that is not a custom resource of the checked groups, its
// kind for one that decodes strictly, or an error naming the fields at fault.
func check(doc document) (string, error) {
	data, err := yaml.YAMLToJSON(doc.body)
	if err != nil {
		return "", fmt.Errorf("%s: not YAML: %w", doc.where, err)
	}
	if len(bytes.TrimSpace(data)) == 0 || string(bytes.TrimSpace(data)) == "null" {
		return "", nil // an empty document (a template that rendered nothing)
	}
	var head header
	if err := kjson.UnmarshalCaseSensitivePreserveInts(data, &head); err != nil {
		return "", fmt.Errorf("%s: not a Kubernetes object: %w", doc.where, err)
	}
	if !inCheckedGroup(head.APIVersion) {
		return "", nil
	}
	key := head.APIVersion + " " + head.Kind
	what := fmt.Sprintf("%s: %s %q", doc.where, key, head.Metadata.Name)
	newObject, known := knownTypes[key]
	if !known {
		return "", fmt.Errorf("%s: no API type known for this apiVersion and kind", what)
	}
	strict, err := kjson.UnmarshalStrict(data, newObject(), kjson.DisallowUnknownFields)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	if len(strict) > 0 {
		problems := make([]string, len(strict))
		for i, problem := range strict {
			problems[i] = problem.Error()
		}
		return "", fmt.Errorf("%s: %s", what, strings.Join(problems, "; "))
	}
	return head.Kind, nil
}

func inputs(args []string) ([]document, error) {
	if len(args) == 0 {
		return split("stdin", os.Stdin)
	}
	var docs []document
	for _, path := range args {
		file, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		found, err := split(path, file)
		file.Close()
		if err != nil {
			return nil, err
		}
		docs = append(docs, found...)
	}
	return docs, nil
}

func main() {
	docs, err := inputs(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "crd-check:", err)
		os.Exit(2)
	}
	checked, others, failed := 0, 0, 0
	for _, doc := range docs {
		kind, err := check(doc)
		switch {
		case err != nil:
			fmt.Fprintln(os.Stderr, "crd-check:", err)
			failed++
		case kind == "":
			others++
		default:
			checked++
		}
	}
	fmt.Printf("crd-check: %d custom resources decoded strictly, %d failed, %d other documents\n",
		checked, failed, others)
	if failed > 0 {
		os.Exit(1)
	}
}
