//! HPACK (RFC 7541): decoding of HTTP/2 header blocks into name/value pairs, with fixed
//! storage.
//!
//! One [`Decoder`] follows one direction of one connection: its dynamic table is a ring of
//! [`TABLE_BYTES`] bytes (the protocol's default `SETTINGS_HEADER_TABLE_SIZE`) and an index
//! of at most [`MAX_ENTRIES`] entries, both allocated with the decoder and never grown.
//! Decoded names and values are handed to a callback; strings that are Huffman-coded or
//! wrap around the ring are copied into a [`Scratch`] the caller owns (one per tracker).
//!
//! Every block of a direction must be decoded, in order, or the dynamic table no longer
//! matches the encoder's: an error ([`HpackError`]) means the direction is lost. An
//! encoder that grows its table past [`TABLE_BYTES`] (allowed only when the peer announced
//! a larger table) is such an error. Nothing here panics on input or allocates after
//! construction.

/// Bytes of the dynamic table: the protocol's default and the most this decoder follows.
pub const TABLE_BYTES: usize = 4096;
/// Entries the table can hold at most: each costs 32 bytes beyond its name and value.
pub const MAX_ENTRIES: usize = TABLE_BYTES / 32;
/// Longest decoded name or value a [`Scratch`] holds; a longer literal not kept in the
/// table is passed over, its value given as empty.
pub const STRING_CAP: usize = TABLE_BYTES;

/// Why a header block could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HpackError {
    /// The block ends inside a representation.
    Truncated,
    /// An integer does not fit 32 bits.
    Overflow,
    /// An index names no entry of either table.
    BadIndex,
    /// A Huffman string holds EOS, or is padded with more than 7 bits or not with ones.
    BadHuffman,
    /// A table size update above [`TABLE_BYTES`].
    TableTooLarge,
}

/// Room to decode one name and one value (the caller owns one, shared by its decoders).
pub struct Scratch {
    name: [u8; STRING_CAP],
    value: [u8; STRING_CAP],
}

impl Default for Scratch {
    fn default() -> Self {
        Self {
            name: [0; STRING_CAP],
            value: [0; STRING_CAP],
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    /// Ring offset of the name; the value follows it.
    at: u16,
    name_len: u16,
    value_len: u16,
}

/// The decoding state of one direction of a connection.
#[derive(Clone)]
pub struct Decoder {
    ring: [u8; TABLE_BYTES],
    entries: [Entry; MAX_ENTRIES],
    /// Index in `entries` of the oldest entry.
    oldest: usize,
    count: usize,
    /// Ring bytes the entries take (names and values).
    used: usize,
    /// The table's size as RFC 7541 counts it (32 more per entry).
    size: usize,
    max_size: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self {
            ring: [0; TABLE_BYTES],
            entries: [Entry::default(); MAX_ENTRIES],
            oldest: 0,
            count: 0,
            used: 0,
            size: 0,
            max_size: TABLE_BYTES,
        }
    }
}

/// Where a string of a representation is.
enum Str<'b> {
    /// In the block, as sent.
    Raw(&'b [u8]),
    /// Decoded into the scratch's name (`true`) or value buffer, this long.
    Scratch(bool, usize),
    /// Too long to decode: passed over.
    Skipped(usize),
}

impl Decoder {
    /// Back to a fresh connection's state.
    pub fn reset(&mut self) {
        self.oldest = 0;
        self.count = 0;
        self.used = 0;
        self.size = 0;
        self.max_size = TABLE_BYTES;
    }

    /// Entries in the dynamic table.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the dynamic table is empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The dynamic table's size as RFC 7541 counts it.
    pub fn table_size(&self) -> usize {
        self.size
    }

    /// Decodes one whole header block, handing each field to `field(name, value)` in
    /// order. On error the table is as far as the block got: the direction is lost.
    pub fn decode(
        &mut self,
        mut block: &[u8],
        scratch: &mut Scratch,
        mut field: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), HpackError> {
        while let Some(&first) = block.first() {
            if first & 0x80 != 0 {
                // Indexed field.
                let index = integer(&mut block, 7)?;
                self.emit_indexed(index, scratch, &mut field)?;
            } else if first & 0xe0 == 0x20 {
                // Dynamic table size update.
                let size = integer(&mut block, 5)? as usize;
                if size > TABLE_BYTES {
                    return Err(HpackError::TableTooLarge);
                }
                self.max_size = size;
                self.evict_to(size);
            } else {
                // A literal: with incremental indexing (01), without (0000) or never (0001).
                let indexing = first & 0xc0 == 0x40;
                let index = integer(&mut block, if indexing { 6 } else { 4 })?;
                let name = if index == 0 {
                    string(&mut block, scratch, true)?
                } else {
                    self.copy_name(index, scratch)?
                };
                let value = string(&mut block, scratch, false)?;
                let n = resolve(&name, scratch);
                let v = resolve(&value, scratch);
                field(n, v);
                if indexing {
                    let (nl, vl) = (name.len(), value.len());
                    match (n.len() == nl, v.len() == vl) {
                        (true, true) => self.insert(n, v),
                        // A string too long to hold is larger than the table: adding it
                        // empties the table (RFC 7541 section 4.4).
                        _ => self.evict_to(0),
                    }
                }
            }
        }
        Ok(())
    }

    fn emit_indexed(
        &self,
        index: u32,
        scratch: &mut Scratch,
        field: &mut impl FnMut(&[u8], &[u8]),
    ) -> Result<(), HpackError> {
        let index = index as usize;
        if index == 0 {
            return Err(HpackError::BadIndex);
        }
        if let Some((n, v)) = STATIC_TABLE.get(index - 1) {
            field(n.as_bytes(), v.as_bytes());
            return Ok(());
        }
        let e = self.entry(index - STATIC_TABLE.len())?;
        let (nl, vl) = (usize::from(e.name_len), usize::from(e.value_len));
        self.copy_out(usize::from(e.at), &mut scratch.name[..nl]);
        self.copy_out(usize::from(e.at) + nl, &mut scratch.value[..vl]);
        field(&scratch.name[..nl], &scratch.value[..vl]);
        Ok(())
    }

    /// The name of entry `index` of either table, copied into the scratch's name buffer
    /// when dynamic (its entry may be evicted by the insertion that follows).
    fn copy_name(&self, index: u32, scratch: &mut Scratch) -> Result<Str<'static>, HpackError> {
        let index = index as usize;
        if let Some((n, _)) = STATIC_TABLE.get(index.wrapping_sub(1)) {
            return Ok(Str::Raw(n.as_bytes()));
        }
        if index == 0 {
            return Err(HpackError::BadIndex);
        }
        let e = self.entry(index - STATIC_TABLE.len())?;
        let nl = usize::from(e.name_len);
        self.copy_out(usize::from(e.at), &mut scratch.name[..nl]);
        Ok(Str::Scratch(true, nl))
    }

    /// Dynamic entry `i` (1: the newest).
    fn entry(&self, i: usize) -> Result<Entry, HpackError> {
        if i == 0 || i > self.count {
            return Err(HpackError::BadIndex);
        }
        Ok(self.entries[(self.oldest + self.count - i) % MAX_ENTRIES])
    }

    fn copy_out(&self, at: usize, out: &mut [u8]) {
        for (k, b) in out.iter_mut().enumerate() {
            *b = self.ring[(at + k) % TABLE_BYTES];
        }
    }

    fn evict_to(&mut self, size: usize) {
        while self.size > size && self.count > 0 {
            let e = self.entries[self.oldest];
            let bytes = usize::from(e.name_len) + usize::from(e.value_len);
            self.used -= bytes;
            self.size -= bytes + 32;
            self.oldest = (self.oldest + 1) % MAX_ENTRIES;
            self.count -= 1;
        }
    }

    fn insert(&mut self, name: &[u8], value: &[u8]) {
        let bytes = name.len() + value.len();
        if bytes + 32 > self.max_size {
            self.evict_to(0);
            return;
        }
        self.evict_to(self.max_size - bytes - 32);
        // The newest entry's bytes follow the others' in the ring.
        let start = match self.count {
            0 => 0,
            _ => (usize::from(self.entries[self.oldest].at) + self.used) % TABLE_BYTES,
        };
        for (k, b) in name.iter().chain(value).enumerate() {
            self.ring[(start + k) % TABLE_BYTES] = *b;
        }
        // At most TABLE_BYTES / 32 entries fit in a table of at most TABLE_BYTES.
        let slot = (self.oldest + self.count) % MAX_ENTRIES;
        self.entries[slot] = Entry {
            at: start as u16,
            name_len: name.len() as u16,
            value_len: value.len() as u16,
        };
        self.count += 1;
        self.used += bytes;
        self.size += bytes + 32;
    }
}

impl Str<'_> {
    fn len(&self) -> usize {
        match self {
            Str::Raw(b) => b.len(),
            Str::Scratch(_, n) | Str::Skipped(n) => *n,
        }
    }
}

/// The bytes a string stands for: empty when it was passed over.
fn resolve<'a>(s: &'a Str<'a>, scratch: &'a Scratch) -> &'a [u8] {
    match s {
        Str::Raw(b) => b,
        Str::Scratch(true, n) => &scratch.name[..*n],
        Str::Scratch(false, n) => &scratch.value[..*n],
        Str::Skipped(_) => &[],
    }
}

/// An integer with an `n`-bit prefix (RFC 7541 section 5.1).
fn integer(block: &mut &[u8], n: u32) -> Result<u32, HpackError> {
    let (&first, mut rest) = block.split_first().ok_or(HpackError::Truncated)?;
    let max = (1u32 << n) - 1;
    let mut v = u32::from(first) & max;
    if v == max {
        let mut shift = 0u32;
        loop {
            let (&b, r) = rest.split_first().ok_or(HpackError::Truncated)?;
            rest = r;
            if shift > 28 {
                return Err(HpackError::Overflow);
            }
            let add = u32::from(b & 0x7f)
                .checked_shl(shift)
                .filter(|a| a >> shift == u32::from(b & 0x7f))
                .ok_or(HpackError::Overflow)?;
            v = v.checked_add(add).ok_or(HpackError::Overflow)?;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
    }
    *block = rest;
    Ok(v)
}

/// A string literal (RFC 7541 section 5.2): raw, or Huffman-decoded into the scratch.
fn string<'b>(
    block: &mut &'b [u8],
    scratch: &mut Scratch,
    name: bool,
) -> Result<Str<'b>, HpackError> {
    let huffman = block.first().ok_or(HpackError::Truncated)? & 0x80 != 0;
    let len = integer(block, 7)? as usize;
    if block.len() < len {
        return Err(HpackError::Truncated);
    }
    let (s, rest) = block.split_at(len);
    *block = rest;
    if !huffman {
        return Ok(Str::Raw(s));
    }
    let out = if name {
        &mut scratch.name
    } else {
        &mut scratch.value
    };
    match huffman_decode(s, out)? {
        Some(n) => Ok(Str::Scratch(name, n)),
        None => Ok(Str::Skipped(len)),
    }
}

/// Canonical decoding tables built from [`HUFFMAN_CODES`]: for each code length, the
/// first code, how many codes have it, and where its symbols start in `SYMBOLS`.
struct Canonical {
    first: [u32; 31],
    count: [u16; 31],
    offset: [u16; 31],
    symbols: [u16; 257],
}

const fn canonical() -> Canonical {
    let mut c = Canonical {
        first: [0; 31],
        count: [0; 31],
        offset: [0; 31],
        symbols: [0; 257],
    };
    let mut s = 0;
    while s < 257 {
        c.count[HUFFMAN_CODES[s].1 as usize] += 1;
        s += 1;
    }
    let mut len = 1;
    let mut at = 0u16;
    while len < 31 {
        c.offset[len] = at;
        at += c.count[len];
        len += 1;
    }
    // Symbols by (length, value): the order of a canonical code.
    let mut fill = c.offset;
    s = 0;
    while s < 257 {
        let l = HUFFMAN_CODES[s].1 as usize;
        c.symbols[fill[l] as usize] = s as u16;
        fill[l] += 1;
        s += 1;
    }
    len = 1;
    while len < 31 {
        if c.count[len] > 0 {
            c.first[len] = HUFFMAN_CODES[c.symbols[c.offset[len] as usize] as usize].0;
        }
        len += 1;
    }
    c
}

static CANONICAL: Canonical = canonical();

/// Decodes a Huffman string into `out`: its length, or `None` when it does not fit.
fn huffman_decode(input: &[u8], out: &mut [u8]) -> Result<Option<usize>, HpackError> {
    let c = &CANONICAL;
    let mut n = 0;
    let mut code = 0u32;
    let mut len = 0usize;
    for &byte in input {
        for bit in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> bit) & 1);
            len += 1;
            if len > 30 {
                return Err(HpackError::BadHuffman);
            }
            let k = code.wrapping_sub(c.first[len]);
            if c.count[len] > 0 && code >= c.first[len] && k < u32::from(c.count[len]) {
                let sym = c.symbols[usize::from(c.offset[len]) + k as usize];
                if sym == 256 {
                    return Err(HpackError::BadHuffman);
                }
                if n == out.len() {
                    return Ok(None);
                }
                out[n] = sym as u8;
                n += 1;
                code = 0;
                len = 0;
            }
        }
    }
    // Padding: the most significant bits of EOS (all ones), fewer than 8.
    if len > 7 || code != (1 << len) - 1 {
        return Err(HpackError::BadHuffman);
    }
    Ok(Some(n))
}

/// RFC 7541 Appendix B: `(code, bits)` of each symbol, 0 to 255 then EOS (256).
pub(crate) static HUFFMAN_CODES: [(u32, u8); 257] = [
    (0x1ff8, 13),
    (0x7fffd8, 23),
    (0xfffffe2, 28),
    (0xfffffe3, 28),
    (0xfffffe4, 28),
    (0xfffffe5, 28),
    (0xfffffe6, 28),
    (0xfffffe7, 28),
    (0xfffffe8, 28),
    (0xffffea, 24),
    (0x3ffffffc, 30),
    (0xfffffe9, 28),
    (0xfffffea, 28),
    (0x3ffffffd, 30),
    (0xfffffeb, 28),
    (0xfffffec, 28),
    (0xfffffed, 28),
    (0xfffffee, 28),
    (0xfffffef, 28),
    (0xffffff0, 28),
    (0xffffff1, 28),
    (0xffffff2, 28),
    (0x3ffffffe, 30),
    (0xffffff3, 28),
    (0xffffff4, 28),
    (0xffffff5, 28),
    (0xffffff6, 28),
    (0xffffff7, 28),
    (0xffffff8, 28),
    (0xffffff9, 28),
    (0xffffffa, 28),
    (0xffffffb, 28),
    (0x14, 6),
    (0x3f8, 10),
    (0x3f9, 10),
    (0xffa, 12),
    (0x1ff9, 13),
    (0x15, 6),
    (0xf8, 8),
    (0x7fa, 11),
    (0x3fa, 10),
    (0x3fb, 10),
    (0xf9, 8),
    (0x7fb, 11),
    (0xfa, 8),
    (0x16, 6),
    (0x17, 6),
    (0x18, 6),
    (0x0, 5),
    (0x1, 5),
    (0x2, 5),
    (0x19, 6),
    (0x1a, 6),
    (0x1b, 6),
    (0x1c, 6),
    (0x1d, 6),
    (0x1e, 6),
    (0x1f, 6),
    (0x5c, 7),
    (0xfb, 8),
    (0x7ffc, 15),
    (0x20, 6),
    (0xffb, 12),
    (0x3fc, 10),
    (0x1ffa, 13),
    (0x21, 6),
    (0x5d, 7),
    (0x5e, 7),
    (0x5f, 7),
    (0x60, 7),
    (0x61, 7),
    (0x62, 7),
    (0x63, 7),
    (0x64, 7),
    (0x65, 7),
    (0x66, 7),
    (0x67, 7),
    (0x68, 7),
    (0x69, 7),
    (0x6a, 7),
    (0x6b, 7),
    (0x6c, 7),
    (0x6d, 7),
    (0x6e, 7),
    (0x6f, 7),
    (0x70, 7),
    (0x71, 7),
    (0x72, 7),
    (0xfc, 8),
    (0x73, 7),
    (0xfd, 8),
    (0x1ffb, 13),
    (0x7fff0, 19),
    (0x1ffc, 13),
    (0x3ffc, 14),
    (0x22, 6),
    (0x7ffd, 15),
    (0x3, 5),
    (0x23, 6),
    (0x4, 5),
    (0x24, 6),
    (0x5, 5),
    (0x25, 6),
    (0x26, 6),
    (0x27, 6),
    (0x6, 5),
    (0x74, 7),
    (0x75, 7),
    (0x28, 6),
    (0x29, 6),
    (0x2a, 6),
    (0x7, 5),
    (0x2b, 6),
    (0x76, 7),
    (0x2c, 6),
    (0x8, 5),
    (0x9, 5),
    (0x2d, 6),
    (0x77, 7),
    (0x78, 7),
    (0x79, 7),
    (0x7a, 7),
    (0x7b, 7),
    (0x7ffe, 15),
    (0x7fc, 11),
    (0x3ffd, 14),
    (0x1ffd, 13),
    (0xffffffc, 28),
    (0xfffe6, 20),
    (0x3fffd2, 22),
    (0xfffe7, 20),
    (0xfffe8, 20),
    (0x3fffd3, 22),
    (0x3fffd4, 22),
    (0x3fffd5, 22),
    (0x7fffd9, 23),
    (0x3fffd6, 22),
    (0x7fffda, 23),
    (0x7fffdb, 23),
    (0x7fffdc, 23),
    (0x7fffdd, 23),
    (0x7fffde, 23),
    (0xffffeb, 24),
    (0x7fffdf, 23),
    (0xffffec, 24),
    (0xffffed, 24),
    (0x3fffd7, 22),
    (0x7fffe0, 23),
    (0xffffee, 24),
    (0x7fffe1, 23),
    (0x7fffe2, 23),
    (0x7fffe3, 23),
    (0x7fffe4, 23),
    (0x1fffdc, 21),
    (0x3fffd8, 22),
    (0x7fffe5, 23),
    (0x3fffd9, 22),
    (0x7fffe6, 23),
    (0x7fffe7, 23),
    (0xffffef, 24),
    (0x3fffda, 22),
    (0x1fffdd, 21),
    (0xfffe9, 20),
    (0x3fffdb, 22),
    (0x3fffdc, 22),
    (0x7fffe8, 23),
    (0x7fffe9, 23),
    (0x1fffde, 21),
    (0x7fffea, 23),
    (0x3fffdd, 22),
    (0x3fffde, 22),
    (0xfffff0, 24),
    (0x1fffdf, 21),
    (0x3fffdf, 22),
    (0x7fffeb, 23),
    (0x7fffec, 23),
    (0x1fffe0, 21),
    (0x1fffe1, 21),
    (0x3fffe0, 22),
    (0x1fffe2, 21),
    (0x7fffed, 23),
    (0x3fffe1, 22),
    (0x7fffee, 23),
    (0x7fffef, 23),
    (0xfffea, 20),
    (0x3fffe2, 22),
    (0x3fffe3, 22),
    (0x3fffe4, 22),
    (0x7ffff0, 23),
    (0x3fffe5, 22),
    (0x3fffe6, 22),
    (0x7ffff1, 23),
    (0x3ffffe0, 26),
    (0x3ffffe1, 26),
    (0xfffeb, 20),
    (0x7fff1, 19),
    (0x3fffe7, 22),
    (0x7ffff2, 23),
    (0x3fffe8, 22),
    (0x1ffffec, 25),
    (0x3ffffe2, 26),
    (0x3ffffe3, 26),
    (0x3ffffe4, 26),
    (0x7ffffde, 27),
    (0x7ffffdf, 27),
    (0x3ffffe5, 26),
    (0xfffff1, 24),
    (0x1ffffed, 25),
    (0x7fff2, 19),
    (0x1fffe3, 21),
    (0x3ffffe6, 26),
    (0x7ffffe0, 27),
    (0x7ffffe1, 27),
    (0x3ffffe7, 26),
    (0x7ffffe2, 27),
    (0xfffff2, 24),
    (0x1fffe4, 21),
    (0x1fffe5, 21),
    (0x3ffffe8, 26),
    (0x3ffffe9, 26),
    (0xffffffd, 28),
    (0x7ffffe3, 27),
    (0x7ffffe4, 27),
    (0x7ffffe5, 27),
    (0xfffec, 20),
    (0xfffff3, 24),
    (0xfffed, 20),
    (0x1fffe6, 21),
    (0x3fffe9, 22),
    (0x1fffe7, 21),
    (0x1fffe8, 21),
    (0x7ffff3, 23),
    (0x3fffea, 22),
    (0x3fffeb, 22),
    (0x1ffffee, 25),
    (0x1ffffef, 25),
    (0xfffff4, 24),
    (0xfffff5, 24),
    (0x3ffffea, 26),
    (0x7ffff4, 23),
    (0x3ffffeb, 26),
    (0x7ffffe6, 27),
    (0x3ffffec, 26),
    (0x3ffffed, 26),
    (0x7ffffe7, 27),
    (0x7ffffe8, 27),
    (0x7ffffe9, 27),
    (0x7ffffea, 27),
    (0x7ffffeb, 27),
    (0xffffffe, 28),
    (0x7ffffec, 27),
    (0x7ffffed, 27),
    (0x7ffffee, 27),
    (0x7ffffef, 27),
    (0x7fffff0, 27),
    (0x3ffffee, 26),
    (0x3fffffff, 30),
];

/// RFC 7541 Appendix A: the static table, index 1 first.
static STATIC_TABLE: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::boxed::Box;
    use alloc::string::String;
    use alloc::vec::Vec;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    fn decode(d: &mut Decoder, block: &[u8]) -> Result<Vec<(String, String)>, HpackError> {
        let mut scratch = Box::<Scratch>::default();
        let mut out = Vec::new();
        d.decode(block, &mut scratch, |n, v| {
            out.push((
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            ))
        })?;
        Ok(out)
    }

    type Field = (&'static str, &'static str);

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(n, v)| ((*n).into(), (*v).into())).collect()
    }

    const REQUEST_1: [(&str, &str); 4] = [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
    ];

    /// RFC 7541 C.3 (requests without Huffman coding) and C.4 (with): the same fields, the
    /// same table sizes.
    #[test]
    fn rfc7541_request_examples() {
        let plain = [
            "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
            "8286 84be 5808 6e6f 2d63 6163 6865",
            "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
        ];
        let huffman = [
            "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            "8286 84be 5886 a8eb 1064 9cbf",
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
        ];
        for blocks in [plain, huffman] {
            let mut d = Box::<Decoder>::default();
            let mut second = REQUEST_1.to_vec();
            second.push(("cache-control", "no-cache"));
            let third = [
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value"),
            ];
            let wants: [(&[Field], usize, usize); 3] =
                [(&REQUEST_1, 57, 1), (&second, 110, 2), (&third, 164, 3)];
            for (block, (want, size, entries)) in blocks.iter().zip(wants) {
                assert_eq!(decode(&mut d, &hex(block)).unwrap(), pairs(want));
                assert_eq!((d.table_size(), d.len()), (size, entries));
            }
        }
    }

    /// RFC 7541 C.6: responses with Huffman coding in a 256-byte table, entries evicted.
    #[test]
    fn rfc7541_response_examples_evict() {
        let mut d = Box::<Decoder>::default();
        // The block opens with a size update, as an encoder told of a 256-byte table would.
        let mut first = hex("3fe1 01");
        first.extend(hex(
            "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
             2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
        ));
        let date1 = "Mon, 21 Oct 2013 20:13:21 GMT";
        let loc = "https://www.example.com";
        let r1 = [
            (":status", "302"),
            ("cache-control", "private"),
            ("date", date1),
            ("location", loc),
        ];
        assert_eq!(decode(&mut d, &first).unwrap(), pairs(&r1));
        assert_eq!(d.table_size(), 222);
        let mut r2 = r1;
        r2[0].1 = "307";
        assert_eq!(
            decode(&mut d, &hex("4883 640e ffc1 c0bf")).unwrap(),
            pairs(&r2)
        );
        assert_eq!(d.table_size(), 222);
        let r3 = [
            (":status", "200"),
            ("cache-control", "private"),
            ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
            ("location", loc),
            ("content-encoding", "gzip"),
            (
                "set-cookie",
                "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
            ),
        ];
        let block = hex(
            "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
             77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
             9587 3160 65c0 03ed 4ee5 b106 3d50 07",
        );
        assert_eq!(decode(&mut d, &block).unwrap(), pairs(&r3));
        assert_eq!((d.table_size(), d.len()), (215, 3));
    }

    /// Every byte value through the Huffman code: a block from python-hyper's `hpack`
    /// encoder (an implementation that is not ours).
    #[test]
    fn huffman_covers_every_byte() {
        let block = hex(
            "4084f2b0e8a3ffc803ffc7fffd8fffffe2fffffe3fffffe4fffffe5fffffe6fffffe7fffffe8ffffeafffffff3fffffa7fffffabffffffdfffffebfffffecfffffedfffffeefffffefffffff0ffffff1ffffff2fffffffbfffffcffffffd3fffffd7fffffdbfffffdffffffe3fffffe7fffffebfffffed4fe3f9ffaffcabf1febfafefe7fdfd2cbb00089969b71d79fb9f7fff20ffbff3ff50ddbd7f061c58f265cd9f469d5af66dddbf871e5f9cff7ff7fffc3ff9ffe45fff4719242cb34e6e9d68a6a3d7dac426defe3cfaf7fffbfe7ffbffdffffffcfffe6ffff4bfff9ffffa3fffd3ffff53fffd5ffffb3fffeb7fffdaffffb7ffff73fffeeffffdeffffebffffbfffffd9ffffdbfffebffffe0ffffeeffffc3ffff8bffff1ffffe4fffee7fffb1ffff97fffd9ffffcdffff9fffffbffffdafffeeffff4ffffb7fffee7fffe8ffffd3fffdeffffd5fffeeffffbdffffe1fffdfffff7fffff5ffffecffff07fff87fffe0ffff17fffedffff87ffff77fffeffffeaffff8bfffe3ffff93ffff87fffcbffff37ffff1fffff83ffffe1fffebfffe3ffff3fffff2ffffa3ffffd9fffff17ffffc7fffff27ffffdefffffbffffff2fffff8fffffb7fff97fff8fffffe6fffffc1fffff87ffffe7fffffc5ffffe5fffe4ffff2fffffd1fffff4ffffffefffffe3fffffc9fffff97fffb3ffffcffffb7fffcdffff4ffff9ffffd1ffffcffffeaffffafffffddffffeffffff4fffff5fffffabffffa7ffffd7fffff9bffffecfffffb7fffff3fffffe8fffffd3fffffabfffff5fffffff7ffffecfffffdbfffffbbfffff7ffffff0fffffbbf",
        );
        let mut d = Box::<Decoder>::default();
        let mut scratch = Box::<Scratch>::default();
        let mut seen = Vec::new();
        d.decode(&block, &mut scratch, |n, v| {
            seen.push((n.to_vec(), v.to_vec()))
        })
        .unwrap();
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(seen, [(b"x-all".to_vec(), all)]);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let mut d = Box::<Decoder>::default();
        for (block, want) in [
            (&b"\x80"[..], HpackError::BadIndex),
            (b"\xbe", HpackError::BadIndex),
            (b"\xff\xff\xff\xff\xff\xff\x7f", HpackError::Overflow),
            (b"\x41\x05ab", HpackError::Truncated),
            (b"\x3f\xe2\x1f", HpackError::TableTooLarge),
            // EOS inside a string, and padding that is not all ones.
            (b"\x40\x84\xff\xff\xff\xff", HpackError::BadHuffman),
            (b"\x40\x81\x00\x81\x00", HpackError::BadHuffman),
        ] {
            assert_eq!(decode(&mut d, block), Err(want), "{block:?}");
        }
        // A literal name from the table whose entry the insertion evicts keeps its name.
        let mut d = Box::<Decoder>::default();
        let mut big = alloc::vec![0x40, 0x01, b'n', 0x7f, 0xa1, 0x1e];
        big.extend(core::iter::repeat_n(b'v', 4000));
        decode(&mut d, &big).unwrap();
        let got = decode(
            &mut d,
            &[0x7e, 0x7f, 0xa1, 0x1e]
                .iter()
                .copied()
                .chain(core::iter::repeat_n(b'w', 4000))
                .collect::<Vec<_>>(),
        )
        .unwrap();
        assert_eq!(got[0].0, "n");
        assert_eq!(d.len(), 1);
    }
}
