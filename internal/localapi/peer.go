package localapi

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"
)

// peerCred names the process at the other end of a Unix socket
// connection from the kernel's SO_PEERCRED, and its user from the user
// database (its uid when it has no name there).
func peerCred(c net.Conn) (Peer, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return Peer{}, fmt.Errorf("localapi: not a Unix socket connection: %T", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Peer{}, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Peer{}, err
	}
	if credErr != nil {
		return Peer{}, fmt.Errorf("localapi: SO_PEERCRED: %w", credErr)
	}
	p := Peer{UID: cred.Uid, GID: cred.Gid, PID: cred.Pid, User: strconv.FormatUint(uint64(cred.Uid), 10)}
	if u, err := user.LookupId(p.User); err == nil {
		p.User = u.Username
	}
	return p, nil
}

// memberOf reports whether p belongs to group, as its primary group or a
// supplementary one, by the group database.
func memberOf(p Peer, group string) bool {
	g, err := user.LookupGroup(group)
	if err != nil {
		return false
	}
	if g.Gid == strconv.FormatUint(uint64(p.GID), 10) {
		return true
	}
	u, err := user.LookupId(strconv.FormatUint(uint64(p.UID), 10))
	if err != nil {
		return false
	}
	gids, err := u.GroupIds()
	return err == nil && slices.Contains(gids, g.Gid)
}

// ListenUnix makes the API's socket at path: mode 0660 and group group
// when that group exists; when it does not, a warning, and the socket is
// the daemon's user's alone (0600). A socket left by a daemon that did
// not stop cleanly is replaced; any other file there is an error.
func ListenUnix(path, group string, log *slog.Logger) (*net.UnixListener, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "localapi")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("localapi: %w", err)
	}
	if st, err := os.Lstat(path); err == nil {
		if st.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("localapi: %s exists and is not a socket", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("localapi: %s: another process serves it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("localapi: %w", err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("localapi: %w", err)
	}
	// Until the chmod below the socket has the mode the umask gives (the
	// unit's UMask=0027 keeps others out); the peer check holds anyway.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("localapi: %w", err)
	}
	ln.SetUnlinkOnClose(true)
	mode := os.FileMode(0o600)
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			log.Warn("the API socket's group does not exist: only the daemon's user and root may use it", "group", group,
				"socket", path)
		} else if gid, err := strconv.Atoi(g.Gid); err == nil {
			if err := os.Chown(path, -1, gid); err != nil {
				log.Warn("the API socket could not be given its group: only the daemon's user and root may use it",
					"group", group, "socket", path, "err", err)
			} else {
				mode = 0o660
			}
		}
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("localapi: %w", err)
	}
	return ln, nil
}

// ServeUnix serves the API on the socket until ctx ends. Each
// connection's peer is looked up once, when it connects.
func (s *Server) ServeUnix(ctx context.Context, ln *net.UnixListener) error {
	return s.serve(ctx, ln, "socket", func(ctx context.Context, c net.Conn) context.Context {
		if lc, ok := c.(*limitedConn); ok {
			c = lc.Conn
		}
		p, err := s.cfg.Peer(c)
		src := source{peer: &p, err: err, key: "uid:" + strconv.FormatUint(uint64(p.UID), 10), user: p.User}
		if err != nil {
			src.key, src.user, src.peer = "unknown-peer", "unknown", nil
		}
		return context.WithValue(ctx, sourceKey{}, src)
	}, nil)
}
