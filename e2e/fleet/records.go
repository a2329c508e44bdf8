package fleet

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// RecordsComponent is the manifests' component that turns deployment
// records and promotion gates on (manifests/components/records).
const RecordsComponent = "components/records"

// recordKeys makes, once, each cluster's key for signing its records and
// the keyring of their public keys that the automator trusts, as files:
// the synchronizers' --record-signing-key (the Secret
// driftless-record-signing-key in a cluster) and the automator's
// --record-keyring (the ConfigMap driftless-record-keyring).
func (f *Fleet) recordKeys() error {
	f.keysOnce.Do(func() {
		// One armored block holding every public key: a keyring file is
		// read as one block (as `gpg --armor --export a b` writes it).
		var keyring bytes.Buffer
		pub, _ := armor.Encode(&keyring, openpgp.PublicKeyType, nil)
		for _, c := range Clusters {
			e, err := openpgp.NewEntity("Driftless synchronizer "+c, "", "synchronizer-"+c+"@driftless.dev",
				&packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
			if err != nil {
				f.keysErr = fmt.Errorf("the %s synchronizer's record signing key: %w", c, err)
				return
			}
			var key bytes.Buffer
			w, _ := armor.Encode(&key, openpgp.PrivateKeyType, nil)
			if err := e.SerializePrivate(w, nil); err != nil {
				f.keysErr = err
				return
			}
			w.Close()
			if err := os.WriteFile(f.recordKey(c), key.Bytes(), 0o600); err != nil {
				f.keysErr = err
				return
			}
			if err := e.Serialize(pub); err != nil {
				f.keysErr = err
				return
			}
		}
		pub.Close()
		f.keysErr = os.WriteFile(f.recordKeyring(), keyring.Bytes(), 0o644)
	})
	return f.keysErr
}

// recordKey is the file of cluster c's record signing key.
func (f *Fleet) recordKey(c string) string {
	return filepath.Join(f.opts.Dir, "record-signing-key-"+c+".asc")
}

// recordKeyring is the file of the synchronizers' public keys.
func (f *Fleet) recordKeyring() string { return filepath.Join(f.opts.Dir, "record-keyring.asc") }
