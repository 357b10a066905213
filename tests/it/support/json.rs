//! An order-preserving JSON parser that keeps every string literal exactly as it was
//! written on the wire (`\u003c` stays `\u003c`), so the differential test can compare
//! member order and Go's escaping, which `serde_json::Value` would lose.

#[derive(Clone, Debug, PartialEq)]
pub enum J {
    Null,
    Bool(bool),
    /// The number's text as sent.
    Num(String),
    /// The string literal's text between the quotes, escapes untouched.
    Str(String),
    Arr(Vec<J>),
    /// Members in wire order; names are raw literals too.
    Obj(Vec<(String, J)>),
}

impl J {
    pub fn get(&self, name: &str) -> Option<&J> {
        match self {
            J::Obj(m) => m.iter().find(|(k, _)| k == name).map(|(_, v)| v),
            _ => None,
        }
    }
    pub fn get_mut(&mut self, name: &str) -> Option<&mut J> {
        match self {
            J::Obj(m) => m.iter_mut().find(|(k, _)| k == name).map(|(_, v)| v),
            _ => None,
        }
    }
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            J::Num(n) => n.parse().ok(),
            _ => None,
        }
    }
    pub fn as_raw_str(&self) -> Option<&str> {
        match self {
            J::Str(s) => Some(s),
            _ => None,
        }
    }
    /// Compact re-serialisation (string literals as they came).
    pub fn render(&self) -> String {
        match self {
            J::Null => "null".into(),
            J::Bool(b) => b.to_string(),
            J::Num(n) => n.clone(),
            J::Str(s) => format!("\"{s}\""),
            J::Arr(a) => format!(
                "[{}]",
                a.iter().map(|v| v.render()).collect::<Vec<_>>().join(",")
            ),
            J::Obj(m) => format!(
                "{{{}}}",
                m.iter()
                    .map(|(k, v)| format!("\"{k}\":{}", v.render()))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }
}

pub fn parse(text: &str) -> Result<J, String> {
    let b = text.as_bytes();
    let mut i = 0;
    let v = value(b, &mut i)?;
    ws(b, &mut i);
    if i != b.len() {
        return Err(format!("trailing data at byte {i}"));
    }
    Ok(v)
}

fn ws(b: &[u8], i: &mut usize) {
    while *i < b.len() && matches!(b[*i], b' ' | b'\t' | b'\n' | b'\r') {
        *i += 1;
    }
}

fn lit(b: &[u8], i: &mut usize, word: &str, v: J) -> Result<J, String> {
    if b[*i..].starts_with(word.as_bytes()) {
        *i += word.len();
        Ok(v)
    } else {
        Err(format!("bad literal at byte {i}"))
    }
}

fn string(b: &[u8], i: &mut usize) -> Result<String, String> {
    // b[*i] == '"'
    let start = *i + 1;
    let mut j = start;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => {
                *i = j + 1;
                return Ok(String::from_utf8_lossy(&b[start..j]).into_owned());
            }
            _ => j += 1,
        }
    }
    Err("unterminated string".into())
}

fn value(b: &[u8], i: &mut usize) -> Result<J, String> {
    ws(b, i);
    if *i >= b.len() {
        return Err("unexpected end".into());
    }
    match b[*i] {
        b'n' => lit(b, i, "null", J::Null),
        b't' => lit(b, i, "true", J::Bool(true)),
        b'f' => lit(b, i, "false", J::Bool(false)),
        b'"' => Ok(J::Str(string(b, i)?)),
        b'[' => {
            *i += 1;
            let mut out = Vec::new();
            ws(b, i);
            if *i < b.len() && b[*i] == b']' {
                *i += 1;
                return Ok(J::Arr(out));
            }
            loop {
                out.push(value(b, i)?);
                ws(b, i);
                match b.get(*i) {
                    Some(b',') => *i += 1,
                    Some(b']') => {
                        *i += 1;
                        return Ok(J::Arr(out));
                    }
                    _ => return Err(format!("expected , or ] at byte {i}")),
                }
            }
        }
        b'{' => {
            *i += 1;
            let mut out = Vec::new();
            ws(b, i);
            if *i < b.len() && b[*i] == b'}' {
                *i += 1;
                return Ok(J::Obj(out));
            }
            loop {
                ws(b, i);
                if b.get(*i) != Some(&b'"') {
                    return Err(format!("expected member name at byte {i}"));
                }
                let k = string(b, i)?;
                ws(b, i);
                if b.get(*i) != Some(&b':') {
                    return Err(format!("expected : at byte {i}"));
                }
                *i += 1;
                let v = value(b, i)?;
                out.push((k, v));
                ws(b, i);
                match b.get(*i) {
                    Some(b',') => *i += 1,
                    Some(b'}') => {
                        *i += 1;
                        return Ok(J::Obj(out));
                    }
                    _ => return Err(format!("expected , or }} at byte {i}")),
                }
            }
        }
        b'-' | b'0'..=b'9' => {
            let s = *i;
            while *i < b.len() && matches!(b[*i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                *i += 1;
            }
            Ok(J::Num(String::from_utf8_lossy(&b[s..*i]).into_owned()))
        }
        c => Err(format!("unexpected {:?} at byte {i}", c as char)),
    }
}

#[test]
fn json_parser_keeps_order_and_escapes() {
    let t = r#"{"b":1,"a":"x\u003cy","n":[true,null,{"k":-2}]}"#;
    let j = parse(t).unwrap();
    assert_eq!(j.render(), t);
    assert_eq!(j.get("a").unwrap().as_raw_str(), Some(r"x\u003cy"));
}
