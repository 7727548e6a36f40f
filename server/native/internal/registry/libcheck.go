package registry

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// The checks a library must pass before dlopen may touch it (compiled_models/libcheck.py
// applies the same rules). The manifest's sha256 proves only that the library is the one
// the manifest's writer meant, so the path must stay inside the artifact folder and the
// file must be a whole ELF shared object for this CPU: a truncated library whose segments
// reach past the end of the file would be mapped by dlopen and kill the process (SIGBUS).

var elfMachines = map[string]uint16{"amd64": 62, "arm64": 183}

// confinedPath returns folder/library, refusing paths that leave the folder.
func confinedPath(folder, library string) (string, error) {
	if library == "" || filepath.IsAbs(library) || strings.Contains(library, "\\") ||
		containsDotDot(library) {
		return "", fmt.Errorf("library path '%s' must be a relative path inside the folder", library)
	}
	path := filepath.Join(folder, library)
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", err
	}
	root, err := filepath.EvalSymlinks(folder)
	if err != nil {
		return "", err
	}
	rel, err := filepath.Rel(root, real)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("library path '%s' resolves outside the artifact folder", library)
	}
	return path, nil
}

func containsDotDot(p string) bool {
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return true
		}
	}
	return false
}

// checkELF refuses anything but a complete little-endian ELF64 shared object for this CPU.
func checkELF(data []byte) error {
	size := uint64(len(data))
	if size < 64 || string(data[:4]) != "\x7fELF" {
		return fmt.Errorf("not an ELF file")
	}
	if data[4] != 2 || data[5] != 1 {
		return fmt.Errorf("not a little-endian 64-bit ELF file")
	}
	le := binary.LittleEndian
	if t := le.Uint16(data[16:]); t != 3 {
		return fmt.Errorf("ELF type %d is not a shared object", t)
	}
	if want, ok := elfMachines[runtime.GOARCH]; ok {
		if m := le.Uint16(data[18:]); m != want {
			return fmt.Errorf("built for ELF machine %d, this host is %d", m, want)
		}
	}
	phoff, shoff := le.Uint64(data[32:]), le.Uint64(data[40:])
	phsz, phnum := uint64(le.Uint16(data[54:])), uint64(le.Uint16(data[56:]))
	shsz, shnum := uint64(le.Uint16(data[58:])), uint64(le.Uint16(data[60:]))
	if phsz != 56 || phnum == 0 || phoff > size || phnum*phsz > size-phoff {
		return fmt.Errorf("program headers lie outside the file (%d bytes): truncated?", size)
	}
	if shnum > 0 && (shoff > size || shnum*shsz > size-shoff) {
		return fmt.Errorf("section headers lie outside the file (%d bytes): truncated?", size)
	}
	dynamic := false
	for k := uint64(0); k < phnum; k++ {
		h := data[phoff+k*phsz:]
		off, filesz := le.Uint64(h[8:]), le.Uint64(h[32:])
		if off > size || filesz > size-off {
			return fmt.Errorf("segment %d ends at byte %d but the file has %d bytes: truncated", k, off+filesz, size)
		}
		dynamic = dynamic || le.Uint32(h) == 2
	}
	if !dynamic {
		return fmt.Errorf("no dynamic segment: not a loadable shared object")
	}
	return nil
}

// readLibrary reads the artifact's library after confining its path.
func readLibrary(folder, library string) ([]byte, error) {
	path, err := confinedPath(folder, library)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(path)
}
