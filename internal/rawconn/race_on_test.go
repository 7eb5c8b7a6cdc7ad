//go:build race

package rawconn

// raceEnabled: sync.Pool drops some of what it is given in a race build,
// so a pooled Read allocates now and then.
const raceEnabled = true
