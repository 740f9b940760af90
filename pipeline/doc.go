// Package pipeline is the one API the CLI and surgery share for the stages of neuron surgery:
// opening a model and an edited variant of it, the dispatch over the selection methods
// (miner, dape, contrib, ig, random) with their parameters checked in one place, patching a
// neuron set into an edit, verifying edits against the base, and writing what each stage
// makes atomically. A CLI verb is flag parsing plus one call here; surgery.Run is a sequence
// of the same calls. The two cannot disagree on what a method or a parameter means.
package pipeline
