// fluxcel evaluates Flux's healthCheckExprs on objects with Flux's own evaluator (github.com/fluxcd/pkg/runtime/cel,
// what kustomize-controller runs), so the expressions in gitops/flux/ are tested against the real implementation.
//
//	fluxcel KUSTOMIZATION.yaml OBJECT.yaml...   prints "<file> <Status>" per object, or "<file> error: ..."
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/fluxcd/pkg/apis/kustomize"
	"github.com/fluxcd/pkg/runtime/cel"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

type kustomization struct {
	Spec struct {
		HealthCheckExprs []kustomize.CustomHealthCheck `json:"healthCheckExprs"`
	} `json:"spec"`
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: fluxcel KUSTOMIZATION.yaml OBJECT.yaml...")
		os.Exit(2)
	}
	raw, err := os.ReadFile(os.Args[1])
	must(err)
	var k kustomization
	must(yaml.Unmarshal(raw, &k))
	if len(k.Spec.HealthCheckExprs) != 1 {
		must(fmt.Errorf("%s: expected one healthCheckExprs entry, found %d", os.Args[1], len(k.Spec.HealthCheckExprs)))
	}
	evaluator, err := cel.NewStatusEvaluator(&k.Spec.HealthCheckExprs[0].HealthCheckExpressions)
	must(err)
	for _, path := range os.Args[2:] {
		raw, err := os.ReadFile(path)
		must(err)
		// Decoded as the API server's objects reach Flux: integers stay int64 (the generation check needs them).
		data, err := yaml.YAMLToJSON(raw)
		must(err)
		obj := &unstructured.Unstructured{}
		must(obj.UnmarshalJSON(data))
		result, err := evaluator.Evaluate(context.Background(), obj)
		if err != nil {
			fmt.Printf("%s error: %v\n", path, err)
			continue
		}
		fmt.Printf("%s %s\n", path, result.Status)
	}
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "fluxcel:", err)
		os.Exit(1)
	}
}
