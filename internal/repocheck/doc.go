// Package repocheck holds tests about the repository as a whole, such as
// that every package says what it is for. It has no code; nothing imports
// it.
package repocheck
