// Package locate records per-neuron statistics from forward passes over labelled samples and
// selects neurons with the published methods: DAPE (MMNeuron/LAPE), contribution scores
// (Pan et al.), and a seeded random baseline of the same size per layer.
package locate
