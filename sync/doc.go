// Package sync will move data between a checkpoint and its authority when
// the link is up: event logs up, trust and revocation lists down, resumable
// and never blocking scanning. The daemon will import it.
//
// Until then the lists travel as files: cmd/authority writes them and
// checkpointctl reads them (internal/trust holds their format).
package sync
