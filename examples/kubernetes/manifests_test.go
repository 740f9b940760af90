package kubernetes

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// job is the part of a batch/v1 Job the examples rely on.
type job struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Spec       struct {
		CompletionMode string `yaml:"completionMode"`
		Completions    int    `yaml:"completions"`
		Parallelism    int    `yaml:"parallelism"`
		Template       struct {
			Spec struct {
				RestartPolicy string `yaml:"restartPolicy"`
				Containers    []struct {
					Command []string `yaml:"command"`
					Env     []struct {
						Name  string `yaml:"name"`
						Value string `yaml:"value"`
					} `yaml:"env"`
					VolumeMounts []struct {
						Name      string `yaml:"name"`
						MountPath string `yaml:"mountPath"`
					} `yaml:"volumeMounts"`
				} `yaml:"containers"`
				Volumes []struct {
					Name string `yaml:"name"`
					PVC  struct {
						ClaimName string `yaml:"claimName"`
					} `yaml:"persistentVolumeClaim"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

func readJob(t *testing.T, path string) job {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var j job
	d := yaml.NewDecoder(strings.NewReader(string(b)))
	if err := d.Decode(&j); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if j.APIVersion != "batch/v1" || j.Kind != "Job" || len(j.Spec.Template.Spec.Containers) != 1 || j.Spec.Template.Spec.RestartPolicy != "Never" {
		t.Fatalf("%s: not a one-container batch/v1 Job with restartPolicy Never: %+v", path, j)
	}
	spec := j.Spec.Template.Spec
	if len(spec.Volumes) != 1 || spec.Volumes[0].PVC.ClaimName == "" || len(spec.Containers[0].VolumeMounts) != 1 || spec.Containers[0].VolumeMounts[0].Name != spec.Volumes[0].Name {
		t.Fatalf("%s: the shared volume is not mounted", path)
	}
	return j
}

// The record Job is Indexed, takes its shard from JOB_COMPLETION_INDEX out of SHARDS =
// completions, and writes part-<index>.st; the merge Job lists every part once, in order.
func TestManifests(t *testing.T) {
	rec := readJob(t, "record-job.yaml")
	if rec.Spec.CompletionMode != "Indexed" || rec.Spec.Completions < 1 || rec.Spec.Parallelism < 1 {
		t.Fatalf("record job: completionMode %q, completions %d, parallelism %d", rec.Spec.CompletionMode, rec.Spec.Completions, rec.Spec.Parallelism)
	}
	c := rec.Spec.Template.Spec.Containers[0]
	shards := -1
	for _, e := range c.Env {
		if e.Name == "SHARDS" {
			shards, _ = strconv.Atoi(e.Value)
		}
	}
	if shards != rec.Spec.Completions {
		t.Errorf("record job: SHARDS %d, completions %d", shards, rec.Spec.Completions)
	}
	if len(c.Command) < 2 || c.Command[0] != "/neurosurg" || c.Command[1] != "record" {
		t.Fatalf("record job: command %q", c.Command)
	}
	i := slices.Index(c.Command, "--shard")
	if i < 0 || i+1 >= len(c.Command) || c.Command[i+1] != "$(JOB_COMPLETION_INDEX)/$(SHARDS)" {
		t.Errorf("record job: --shard is not $(JOB_COMPLETION_INDEX)/$(SHARDS): %q", c.Command)
	}
	o := slices.Index(c.Command, "--out")
	if o < 0 || o+1 >= len(c.Command) || c.Command[o+1] != "/shared/out/part-$(JOB_COMPLETION_INDEX).st" {
		t.Fatalf("record job: --out %q", c.Command)
	}
	merge := readJob(t, "merge-job.yaml")
	m := merge.Spec.Template.Spec.Containers[0].Command
	var want []string
	for k := 0; k < shards; k++ {
		want = append(want, fmt.Sprintf("/shared/out/part-%d.st", k))
	}
	if len(m) < 3 || m[0] != "/neurosurg" || m[1] != "stats" || m[2] != "merge" {
		t.Fatalf("merge job: command %q", m)
	}
	var parts []string
	for _, a := range m[3:] {
		if strings.HasPrefix(a, "/shared/out/part-") {
			parts = append(parts, a)
		}
	}
	if !slices.Equal(parts, want) {
		t.Errorf("merge job merges %q, want every part %q", parts, want)
	}
}
