//! NumPy `.npy` files (format 1.0, 2.0 and 3.0) as v2 JSON tensors: the dtype and shape come
//! from the header; the data must be in C order. Booleans, integers, floats and fixed-width
//! strings (`S`, `U`: sent as BYTES) are read; object arrays and Fortran order are refused.

use serde_json::Value;

const MAGIC: &[u8] = b"\x93NUMPY";

/// A tensor read from a `.npy` file: a v2 datatype, the shape and the flat values.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyTensor {
    pub datatype: &'static str,
    pub shape: Vec<i64>,
    pub data: Vec<Value>,
}

/// Whether `bytes` start like a `.npy` file.
pub fn is_npy(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// Element kinds the reader knows, with their v2 datatype.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Int(&'static str),
    Uint(&'static str),
    Float(&'static str),
    /// `S<n>`: n bytes, NUL-padded.
    Bytes,
    /// `U<n>`: n UCS-4 code points, NUL-padded.
    Unicode,
}

/// Parses a whole `.npy` file.
pub fn parse(bytes: &[u8]) -> Result<NpyTensor, String> {
    let rest = bytes.strip_prefix(MAGIC).ok_or("not a .npy file (it does not start with \\x93NUMPY)")?;
    let (&[major, minor], rest) = rest.split_first_chunk::<2>().ok_or("truncated .npy header")?;
    let (header_len, rest) = match major {
        1 => rest.split_first_chunk::<2>().map(|(n, rest)| (usize::from(u16::from_le_bytes(*n)), rest)),
        2 | 3 => rest
            .split_first_chunk::<4>()
            .and_then(|(n, rest)| Some((usize::try_from(u32::from_le_bytes(*n)).ok()?, rest))),
        _ => return Err(format!(".npy format version {major}.{minor} is not supported (1.0 to 3.0 are)")),
    }
    .ok_or("truncated .npy header")?;
    if rest.len() < header_len {
        return Err("truncated .npy header".to_owned());
    }
    let (header, data) = rest.split_at(header_len);
    let header = std::str::from_utf8(header).map_err(|_| ".npy header is not text")?;
    let header = Header::parse(header)?;
    if header.fortran_order {
        return Err("the array is in Fortran order: save it in C order (np.ascontiguousarray) first".to_owned());
    }
    let (kind, big_endian, width) = dtype(&header.descr)?;
    let count = header
        .shape
        .iter()
        .try_fold(1usize, |n, &d| usize::try_from(d).ok().and_then(|d| n.checked_mul(d)))
        .ok_or("the shape is too large")?;
    let expected = count.checked_mul(width).ok_or("the shape is too large")?;
    if data.len() != expected {
        return Err(format!(
            "the header describes {count} × {} = {expected} bytes of data, but the file holds {}",
            header.descr,
            data.len()
        ));
    }
    let shape: Result<Vec<i64>, _> = header.shape.iter().map(|&d| i64::try_from(d)).collect();
    let shape = shape.map_err(|_| "the shape is too large")?;
    Ok(NpyTensor { datatype: kind.datatype(), shape, data: values(kind, big_endian, width, count, data)? })
}

impl Kind {
    fn datatype(self) -> &'static str {
        match self {
            Kind::Bool => "BOOL",
            Kind::Int(t) | Kind::Uint(t) | Kind::Float(t) => t,
            Kind::Bytes | Kind::Unicode => "BYTES",
        }
    }
}

/// `'<i4'` → (kind, big-endian?, bytes per element).
fn dtype(descr: &str) -> Result<(Kind, bool, usize), String> {
    let unsupported = |why: &str| Err(format!("dtype '{descr}' is not supported{why}"));
    let (big_endian, ty) = match descr.as_bytes().first() {
        Some(b'<') => (false, &descr[1..]),
        Some(b'>') => (true, &descr[1..]),
        Some(b'|' | b'=') => (cfg!(target_endian = "big"), &descr[1..]),
        _ => (cfg!(target_endian = "big"), descr),
    };
    let Some(kind) = ty.chars().next() else { return unsupported("") };
    let size: usize = match ty[kind.len_utf8()..].parse() {
        Ok(size) => size,
        Err(_) if kind == 'O' => 0,
        Err(_) => return unsupported(""),
    };
    let kind = match (kind, size) {
        ('b', 1) => Kind::Bool,
        ('i', 1) => Kind::Int("INT8"),
        ('i', 2) => Kind::Int("INT16"),
        ('i', 4) => Kind::Int("INT32"),
        ('i', 8) => Kind::Int("INT64"),
        ('u', 1) => Kind::Uint("UINT8"),
        ('u', 2) => Kind::Uint("UINT16"),
        ('u', 4) => Kind::Uint("UINT32"),
        ('u', 8) => Kind::Uint("UINT64"),
        ('f', 2) => Kind::Float("FP16"),
        ('f', 4) => Kind::Float("FP32"),
        ('f', 8) => Kind::Float("FP64"),
        ('S', _) => Kind::Bytes,
        ('U', n) => return n.checked_mul(4).map(|w| (Kind::Unicode, big_endian, w)).ok_or_else(|| "too wide".into()),
        ('O', _) => {
            return unsupported(": object arrays hold pickled Python objects; save numbers or fixed-width strings");
        }
        ('c', _) => return unsupported(": complex numbers have no v2 datatype"),
        _ => return unsupported(""),
    };
    Ok((kind, big_endian, size))
}

/// Reads `N` bytes as a number in the file's byte order.
fn chunk<const N: usize>(c: &[u8], big_endian: bool) -> [u8; N] {
    let mut a = [0; N];
    a.copy_from_slice(c);
    if big_endian {
        a.reverse();
    }
    a
}

fn finite(x: f64) -> Result<Value, String> {
    if x.is_finite() { Ok(Value::from(x)) } else { Err(format!("{x} cannot be sent as JSON (only finite numbers)")) }
}

/// IEEE 754 half precision to `f64`.
fn f16_to_f64(bits: u16) -> f64 {
    let sign = if bits & 0x8000 == 0 { 1.0 } else { -1.0 };
    let exponent = i32::from((bits >> 10) & 0x1f);
    let fraction = f64::from(bits & 0x3ff);
    match exponent {
        0 => sign * fraction * 2f64.powi(-24),
        31 if fraction == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        e => sign * (1.0 + fraction / 1024.0) * 2f64.powi(e - 15),
    }
}

fn values(kind: Kind, be: bool, width: usize, count: usize, data: &[u8]) -> Result<Vec<Value>, String> {
    if width == 0 {
        // `S0`/`U0` elements are all empty strings; numeric widths are never 0.
        return Ok(vec![Value::from(""); count]);
    }
    data.chunks_exact(width)
        .map(|c| {
            Ok(match (kind, width) {
                (Kind::Bool, _) => Value::Bool(c[0] != 0),
                (Kind::Int(_), 1) => Value::from(i8::from_le_bytes(chunk(c, be))),
                (Kind::Int(_), 2) => Value::from(i16::from_le_bytes(chunk(c, be))),
                (Kind::Int(_), 4) => Value::from(i32::from_le_bytes(chunk(c, be))),
                (Kind::Int(_), _) => Value::from(i64::from_le_bytes(chunk(c, be))),
                (Kind::Uint(_), 1) => Value::from(c[0]),
                (Kind::Uint(_), 2) => Value::from(u16::from_le_bytes(chunk(c, be))),
                (Kind::Uint(_), 4) => Value::from(u32::from_le_bytes(chunk(c, be))),
                (Kind::Uint(_), _) => Value::from(u64::from_le_bytes(chunk(c, be))),
                (Kind::Float(_), 2) => finite(f16_to_f64(u16::from_le_bytes(chunk(c, be))))?,
                (Kind::Float(_), 4) => finite(f64::from(f32::from_le_bytes(chunk(c, be))))?,
                (Kind::Float(_), _) => finite(f64::from_le_bytes(chunk(c, be)))?,
                (Kind::Bytes, _) => {
                    let end = c.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                    let text = std::str::from_utf8(&c[..end])
                        .map_err(|_| "a bytes element is not UTF-8 text, which JSON cannot carry")?;
                    Value::from(text)
                }
                (Kind::Unicode, _) => {
                    let text: Option<String> = c
                        .chunks_exact(4)
                        .map(|u| u32::from_le_bytes(chunk(u, be)))
                        .filter(|&u| u != 0)
                        .map(char::from_u32)
                        .collect();
                    Value::from(text.ok_or("a string element holds an invalid code point")?)
                }
            })
        })
        .collect()
}

/// The header dict: `{'descr': '<i4', 'fortran_order': False, 'shape': (1, 16), }`.
#[derive(Debug)]
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<u64>,
}

/// A Python literal as the header uses them.
#[derive(Debug)]
enum Literal {
    Str(String),
    Bool(bool),
    Tuple(Vec<u64>),
}

/// A cursor over the header text.
struct Cursor<'a>(&'a str);

impl Cursor<'_> {
    fn skip_ws(&mut self) {
        self.0 = self.0.trim_start();
    }

    fn eat(&mut self, prefix: &str) -> bool {
        self.skip_ws();
        match self.0.strip_prefix(prefix) {
            Some(rest) => {
                self.0 = rest;
                true
            }
            None => false,
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.skip_ws();
        let quote = self.0.chars().next().filter(|c| *c == '\'' || *c == '"').ok_or("expected a quoted string")?;
        let body = &self.0[1..];
        let end = body.find(quote).ok_or("unterminated string")?;
        self.0 = &body[end + 1..];
        Ok(body[..end].to_owned())
    }

    fn literal(&mut self) -> Result<Literal, String> {
        self.skip_ws();
        if self.eat("True") {
            return Ok(Literal::Bool(true));
        }
        if self.eat("False") {
            return Ok(Literal::Bool(false));
        }
        if self.eat("(") {
            let mut dims = Vec::new();
            while !self.eat(")") {
                let digits = self.0.find(|c: char| !c.is_ascii_digit()).unwrap_or(self.0.len());
                let dim = self.0[..digits].parse().map_err(|_| "expected a dimension in the shape")?;
                self.0 = &self.0[digits..];
                dims.push(dim);
                if !self.eat(",") && !self.0.trim_start().starts_with(')') {
                    return Err("expected ',' or ')' in the shape".to_owned());
                }
            }
            return Ok(Literal::Tuple(dims));
        }
        if self.0.starts_with('[') {
            return Err("structured dtypes (record arrays) are not supported".to_owned());
        }
        self.string().map(Literal::Str)
    }
}

impl Header {
    fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: String| format!("cannot read the .npy header {:?}: {why}", text.trim_end());
        let mut c = Cursor(text);
        let (mut descr, mut fortran_order, mut shape) = (None, None, None);
        if !c.eat("{") {
            return Err(bad("expected '{'".to_owned()));
        }
        while !c.eat("}") {
            let key = c.string().map_err(bad)?;
            if !c.eat(":") {
                return Err(bad(format!("expected ':' after '{key}'")));
            }
            match (key.as_str(), c.literal().map_err(bad)?) {
                ("descr", Literal::Str(s)) => descr = Some(s),
                ("fortran_order", Literal::Bool(b)) => fortran_order = Some(b),
                ("shape", Literal::Tuple(t)) => shape = Some(t),
                (key, _) => return Err(bad(format!("unexpected entry '{key}'"))),
            }
            if !c.eat(",") && !c.0.trim_start().starts_with('}') {
                return Err(bad("expected ',' or '}'".to_owned()));
            }
        }
        Ok(Header {
            descr: descr.ok_or_else(|| bad("no 'descr'".to_owned()))?,
            fortran_order: fortran_order.ok_or_else(|| bad("no 'fortran_order'".to_owned()))?,
            shape: shape.ok_or_else(|| bad("no 'shape'".to_owned()))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A version 1.0 file, header padded to a multiple of 64 bytes as NumPy writes it.
    fn npy(header: &str, data: &[u8]) -> Vec<u8> {
        let mut h = header.to_owned();
        while !(MAGIC.len() + 4 + h.len() + 1).is_multiple_of(64) {
            h.push(' ');
        }
        h.push('\n');
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&u16::try_from(h.len()).unwrap().to_le_bytes());
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out
    }

    fn le<T: Copy, const N: usize>(v: &[T], f: fn(T) -> [u8; N]) -> Vec<u8> {
        v.iter().flat_map(|&x| f(x)).collect()
    }

    #[test]
    fn numbers() {
        let data = le(&[1i32, -2, 3, 4, 5, 6], i32::to_le_bytes);
        let t = parse(&npy("{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), }", &data)).unwrap();
        assert_eq!((t.datatype, t.shape.as_slice()), ("INT32", &[2i64, 3][..]));
        assert_eq!(Value::from(t.data), json!([1, -2, 3, 4, 5, 6]));

        let cases: [(&str, Vec<u8>, &str, Value); 9] = [
            ("|b1", vec![0, 1], "BOOL", json!([false, true])),
            ("|u1", vec![0, 255], "UINT8", json!([0, 255])),
            ("|i1", vec![0x80, 1], "INT8", json!([-128, 1])),
            ("<u2", le(&[7u16, 65535], u16::to_le_bytes), "UINT16", json!([7, 65535])),
            ("<u8", le(&[u64::MAX, 1], u64::to_le_bytes), "UINT64", json!([u64::MAX, 1])),
            ("<i8", le(&[i64::MIN, 2], i64::to_le_bytes), "INT64", json!([i64::MIN, 2])),
            ("<f2", le(&[0x3c00u16, 0xc000], u16::to_le_bytes), "FP16", json!([1.0, -2.0])),
            ("<f4", le(&[0.5f32, -1.25], f32::to_le_bytes), "FP32", json!([0.5, -1.25])),
            (">f8", le(&[0.5f64, 3.0], f64::to_be_bytes), "FP64", json!([0.5, 3.0])),
        ];
        for (descr, data, datatype, values) in cases {
            let header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (2,), }}");
            let t = parse(&npy(&header, &data)).unwrap_or_else(|e| panic!("{descr}: {e}"));
            assert_eq!((t.datatype, t.shape.as_slice(), Value::from(t.data)), (datatype, &[2i64][..], values));
        }
        let scalar = parse(&npy("{'descr': '<f8', 'fortran_order': False, 'shape': (), }", &2.5f64.to_le_bytes()));
        assert_eq!(scalar.unwrap(), NpyTensor { datatype: "FP64", shape: vec![], data: vec![json!(2.5)] });
    }

    #[test]
    fn strings_are_bytes() {
        let t = parse(&npy("{'descr': '|S3', 'fortran_order': False, 'shape': (2,), }", b"ab\0xyz")).unwrap();
        assert_eq!((t.datatype, Value::from(t.data)), ("BYTES", json!(["ab", "xyz"])));
        let data = le(&['h' as u32, 'é' as u32, 0, 'x' as u32, 0, 0], u32::to_le_bytes);
        let t = parse(&npy("{'descr': '<U3', 'fortran_order': False, 'shape': (2,), }", &data)).unwrap();
        assert_eq!((t.datatype, Value::from(t.data)), ("BYTES", json!(["hé", "x"])));
    }

    #[test]
    fn refusals() {
        let err = |header: &str, data: &[u8]| parse(&npy(header, data)).unwrap_err();
        assert!(err("{'descr': '<i4', 'fortran_order': True, 'shape': (1, 1), }", &[0; 4]).contains("Fortran"));
        assert!(err("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", &[0; 8]).contains("object"));
        assert!(err("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", &[0; 8]).contains("complex"));
        assert!(
            err("{'descr': [('a', '<i4')], 'fortran_order': False, 'shape': (1,), }", &[0; 4]).contains("structured")
        );
        assert!(err("{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", &[0; 4]).contains("holds 4"));
        assert!(
            err("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", &f32::NAN.to_le_bytes()).contains("JSON")
        );
        assert!(err("{'descr': '<i4', 'shape': (1,), }", &[0; 4]).contains("fortran_order"));
        assert!(parse(b"PK\x03\x04").unwrap_err().contains("not a .npy"));
        assert!(parse(b"\x93NUMPY\x01\x00\xff\x00{").unwrap_err().contains("truncated"));
        let mut v2 = npy("{'descr': '<i4', 'fortran_order': False, 'shape': (1,), }", &[7, 0, 0, 0]);
        v2[6] = 9;
        assert!(parse(&v2).unwrap_err().contains("version 9.0"));
    }
}
