//go:build race

package model_test

// raceBuild is set under -race, whose instrumentation allocates on its own.
const raceBuild = true
