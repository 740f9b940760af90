// Package kubernetes holds no code: the example manifests next to it (record-job.yaml,
// merge-job.yaml) are checked by its test, since they cannot be run on a cluster here.
package kubernetes
