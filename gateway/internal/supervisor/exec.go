package supervisor

import (
	"os"
	"os/exec"
	"strconv"

	"github.com/switchboard/switchboard/gateway/internal/config"
)

// WorkerEnv is the environment variable that tells a gateway process it is
// worker number N, not a supervisor; the config package reads it.
const WorkerEnv = config.WorkerIndexEnv

// ListenerFD is the file descriptor a worker finds its listener on.
const ListenerFD = 3

// HeartbeatEnv tells a worker how often to write a heartbeat to
// HeartbeatFD; empty when the watchdog is off.
const HeartbeatEnv = config.WatchdogBeatEnv

// AnnounceEnv names the file descriptor a worker records its announced
// sockets on (package announced); empty when it does not.
const AnnounceEnv = config.AnnounceFDEnv

// OrphansEnv names the file descriptor a worker reads its dead
// predecessor's orphans from (announced.ReadOrphans); empty when none.
const OrphansEnv = config.OrphansFDEnv

// ExecStart returns a StartFunc that runs the executable at path with args as
// a worker, inheriting stdout, stderr and the environment, plus env
// (KEY=value, which win over inherited ones). With the watchdog on, the
// worker inherits its heartbeat pipe as HeartbeatFD and finds the period
// in HeartbeatEnv; the announce pipe and the orphans, when handed over,
// are inherited likewise, at the descriptors AnnounceEnv and OrphansEnv
// name. On Linux the worker is sent SIGTERM if the supervisor dies;
// elsewhere the worker watches for that itself (StopWithParent).
func ExecStart(path string, args, env []string) StartFunc {
	return func(index int, ln *os.File, in Inherit) (Process, error) {
		hb := in.Heartbeat
		cmd := exec.Command(path, args...)
		cmd.Env = append(append(os.Environ(), env...), WorkerEnv+"="+strconv.Itoa(index))
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		cmd.ExtraFiles = []*os.File{ln}
		// Always set, so that a worker never beats to a descriptor it
		// inherited from elsewhere.
		beat := HeartbeatEnv + "="
		if hb.File != nil {
			cmd.ExtraFiles = append(cmd.ExtraFiles, hb.File) // HeartbeatFD
			beat += hb.Every.String()
		}
		cmd.Env = append(cmd.Env, beat)
		// Likewise always set: a descriptor's number, or empty.
		for _, x := range []struct {
			env string
			f   *os.File
		}{{AnnounceEnv, in.Announce}, {OrphansEnv, in.Orphans}} {
			v := ""
			if x.f != nil {
				v = strconv.Itoa(ListenerFD + len(cmd.ExtraFiles))
				cmd.ExtraFiles = append(cmd.ExtraFiles, x.f)
			}
			cmd.Env = append(cmd.Env, x.env+"="+v)
		}
		setDeathSignal(cmd)
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		return execProcess{cmd}, nil
	}
}

type execProcess struct{ cmd *exec.Cmd }

func (p execProcess) Pid() int                   { return p.cmd.Process.Pid }
func (p execProcess) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }
func (p execProcess) Wait() error                { return p.cmd.Wait() }
