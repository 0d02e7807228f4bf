package store

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// KeySource says where the store's encryption key comes from. At most one
// of File and Env is set; with neither, the key is DefaultKeyFile in the
// data directory, created at random along with a new store.
type KeySource struct {
	File string // a file holding the key, hex or base64
	Env  string // the name of an env var holding the key, hex or base64
}

// DefaultKeyFile is the key file's name in the data directory when the
// config names no key.
const DefaultKeyFile = "store.key"

// Exists says whether dir holds a Badger database already.
func Exists(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "MANIFEST"))
	return err == nil
}

// LoadKey returns the store's key. With no File or Env, it reads
// dataDir/store.key, creating it (mode 0600, 32 random bytes) only when
// the store at storeDir does not exist yet: a store whose key went missing
// is an error, never silently replaced by a new one.
func LoadKey(src KeySource, dataDir, storeDir string) ([]byte, error) {
	switch {
	case src.File != "" && src.Env != "":
		return nil, errors.New("set encryption_key_file or encryption_key_env, not both")
	case src.Env != "":
		v, ok := os.LookupEnv(src.Env)
		if !ok || strings.TrimSpace(v) == "" {
			return nil, fmt.Errorf("encryption_key_env names %s, which is not set: export it with the store's key (32 bytes as hex, e.g. from 'openssl rand -hex 32')", src.Env)
		}
		key, err := decodeKey(v)
		if err != nil {
			return nil, fmt.Errorf("encryption_key_env %s: %w", src.Env, err)
		}
		return key, nil
	case src.File != "":
		b, err := os.ReadFile(src.File)
		if err != nil {
			return nil, fmt.Errorf("encryption_key_file: %w (create it with 'openssl rand -hex 32 > %s')", err, src.File)
		}
		key, err := decodeKey(string(b))
		if err != nil {
			return nil, fmt.Errorf("encryption_key_file %s: %w", src.File, err)
		}
		return key, nil
	}
	path := filepath.Join(dataDir, DefaultKeyFile)
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	if err == nil {
		key, derr := decodeKey(string(b))
		switch {
		case derr == nil:
			return key, nil
		case Exists(storeDir):
			return nil, fmt.Errorf("key file %s: %w; the store in %s holds data encrypted with the key this file had: restore the file from a backup", path, derr, storeDir)
		}
		// A key file that does not decode beside no store: a crash while an
		// earlier version of this code wrote it (it wrote in place). Nothing
		// was ever encrypted with it, so a new key replaces it.
	} else if Exists(storeDir) {
		return nil, fmt.Errorf("the store in %s exists but its key file %s is missing: restore the key file, or name the key with encryption_key_file or encryption_key_env", storeDir, path)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := writeKeyFile(dataDir, path, hex.EncodeToString(key)+"\n", err == nil); err != nil {
		if errors.Is(err, os.ErrExist) {
			// Another process starting at once wrote its key first: use it.
			return LoadKey(src, dataDir, storeDir)
		}
		return nil, fmt.Errorf("writing key file %s: %w", path, err)
	}
	return key, nil
}

// writeKeyFile puts a complete key file at path or nothing: it writes a
// temporary file, syncs it and moves it into place, then syncs the
// directory, so a crash never leaves an empty or partial key file. With
// replace false it never replaces a file at path (os.ErrExist: another
// process created one first); with replace true it replaces a broken one.
func writeKeyFile(dir, path, content string, replace bool) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, DefaultKeyFile+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // gone after the link or rename; removes it on failure
	_, werr := f.WriteString(content)
	if err := errors.Join(werr, f.Chmod(0o600), f.Sync(), f.Close()); err != nil {
		return err
	}
	if replace {
		err = os.Rename(tmp, path)
	} else {
		err = os.Link(tmp, path) // fails if path exists, like O_EXCL
	}
	if err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

func decodeKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	key, err := hex.DecodeString(s)
	if err != nil {
		if key, err = base64.StdEncoding.DecodeString(s); err != nil {
			return nil, errors.New("the key is neither hex nor base64: use 32 random bytes as hex ('openssl rand -hex 32')")
		}
	}
	switch len(key) {
	case 16, 24, 32:
		return key, nil
	}
	return nil, fmt.Errorf("the key is %d bytes: use 16, 24 or 32 bytes (32 as hex: 'openssl rand -hex 32')", len(key))
}
