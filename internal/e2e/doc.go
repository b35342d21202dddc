// Package e2e tests the command-line contract of the tools as an operator
// or a script uses them: it builds the real binaries and runs them as
// processes against real files. It has no code of its own; nothing imports
// it.
package e2e
