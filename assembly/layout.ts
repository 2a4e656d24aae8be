// Byte layouts of the records the kernel shares with TypeScript
// (src/kernel/layout.ts mirrors these numbers; a test checks they agree).

// Security association record, 64-byte header then the replay bitmap.
export const SA_SPI: usize = 0;         // u32, host order
export const SA_FLAGS: usize = 4;       // u32, SA_FLAG_*
export const SA_SEQ: usize = 8;         // u64: out = last sequence number used; in = highest authenticated
export const SA_SALT: usize = 16;       // 4 bytes as on the wire
export const SA_WINDOW: usize = 20;     // u32, replay window in packets (multiple of 64)
export const SA_KEY: usize = 24;        // 32 bytes
export const SA_WORD_MASK: usize = 56;  // u32, bitmap words - 1 (a power of two minus one)
export const SA_CIPHER: usize = 60;     // u32, CIPHER_*: which AEAD the key at SA_KEY is for
export const SA_BITMAP: usize = 64;     // u64 words, a ring indexed by seq >> 6 (RFC 6479)

export const SA_FLAG_ESN: u32 = 1;

// Ciphers (SA_CIPHER). ChaCha20-Poly1305 runs here; AES-GCM (RFC 4106) runs
// on the CPU's AES instructions outside WASM (native/src/gcm.c): the kernel
// frames those packets and leaves them INTERIM_AEAD_PENDING.
export const CIPHER_CHACHA20_POLY1305: u32 = 0;
export const CIPHER_AES128_GCM: u32 = 1;
export const CIPHER_AES256_GCM: u32 = 2;

// Packet descriptor, one per packet of a batch.
export const D_BUF: usize = 0;          // u32: where the ESP packet starts (sealing: inner packet at +16)
export const D_LEN: usize = 4;          // u32: in: inner (seal) / ESP (open) length; out: the other
export const D_SA: usize = 8;           // u32: SA record address
export const D_STATUS: usize = 12;      // u8, STATUS_*
export const D_NEXT_HEADER: usize = 13; // u8: seal: in; open: out
export const D_FLAGS: usize = 14;       // u8, D_FLAG_*
export const D_SEQ: usize = 16;         // u64: seal: sequence number to use, 0 = next from the SA; open: out
export const D_IV: usize = 24;          // u64: the IV to use when D_FLAG_IV is set (tests only)
export const DESCRIPTOR_SIZE: usize = 32;

export const D_FLAG_IV: u8 = 1;

// ESP framing (RFC 4303 §2, RFC 7634 §3).
export const ESP_HEADER: usize = 16;    // SPI 4 ‖ seq 4 ‖ IV 8
export const ESP_ICV: usize = 16;

// Per-packet outcomes.
export const STATUS_OK: u8 = 0;
export const STATUS_AUTH: u8 = 1;            // tag did not verify
export const STATUS_REPLAY: u8 = 2;          // sequence number already seen inside the window
export const STATUS_TOO_OLD: u8 = 3;         // sequence number left of the window
export const STATUS_TRUNCATED: u8 = 4;       // shorter than SPI ‖ seq ‖ IV
export const STATUS_MALFORMED: u8 = 5;       // no room for trailer and ICV, or ciphertext not 4-byte aligned
export const STATUS_BAD_PADDING: u8 = 6;     // pad bytes are not 1, 2, 3, …
export const STATUS_BAD_PAD_LENGTH: u8 = 7;  // pad length runs past the payload
export const STATUS_UNKNOWN_SA: u8 = 8;      // SPI is not the SA's
export const STATUS_BAD_NEXT_HEADER: u8 = 9; // next header is not 4 (IPv4) or 41 (IPv6)
export const STATUS_SEQ_EXHAUSTED: u8 = 10;  // the sequence counter would wrap: SA must be rekeyed
export const STATUS_DUMMY: u8 = 11;          // next header 59: a dummy packet (RFC 4303 §2.6), dropped
export const STATUS_WORKER_FAILED: u8 = 12;  // set by the engine when a worker died; never by the kernel
// Between the passes of an AES-GCM batch only; never left in a finished batch.
export const INTERIM_AEAD_PENDING: u8 = 13;   // framed (seal) or pre-checked (open): the AEAD is to run
export const INTERIM_AEAD_OPENED: u8 = 14;    // tag verified and decrypted: the trailer is to be checked
