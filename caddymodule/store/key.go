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
	if err == nil {
		key, err := decodeKey(string(b))
		if err != nil {
			return nil, fmt.Errorf("key file %s: %w", path, err)
		}
		return key, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	if Exists(storeDir) {
		return nil, fmt.Errorf("the store in %s exists but its key file %s is missing: restore the key file, or name the key with encryption_key_file or encryption_key_env", storeDir, path)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	// O_EXCL: two processes starting at once must not write two keys.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating key file %s: %w", path, err)
	}
	_, werr := f.WriteString(hex.EncodeToString(key) + "\n")
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		return nil, fmt.Errorf("writing key file %s: %w", path, err)
	}
	return key, nil
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
