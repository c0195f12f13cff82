//! `-R`: ipvsadm's `config_stream_read` tokeniser (one line at a time, blank-separated, the word
//! `ipvsadm` dropped anywhere, `#` not special).
//!
//! Hand-written: no shell-words crate drops the word `ipvsadm` anywhere and leaves `#` alone.

use std::io::BufRead;

fn peek(r: &mut dyn BufRead) -> Option<u8> {
    match r.fill_buf() {
        Ok(b) => b.first().copied(),
        Err(_) => None,
    }
}

fn is_blank(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

/// The next line as an argv (`argv0` first), or None at the end of the input. Mirrors
/// `config_stream_read`, including its quirks: a line whose trailing blanks run into the end of
/// the input without a newline is dropped, and a final line without a newline still counts.
pub fn read_argv(r: &mut dyn BufRead, argv0: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut a: Vec<Vec<u8>> = vec![argv0.to_vec()];
    let mut ntoken = 0usize;
    loop {
        let c = match peek(r) {
            None => return if ntoken == 0 { None } else { Some(a) },
            Some(c) => c,
        };
        if is_blank(c) {
            // fscanf matched nothing: skip blanks up to the newline.
            loop {
                match peek(r) {
                    None => return None,
                    Some(b'\n') => {
                        r.consume(1);
                        return Some(a);
                    }
                    Some(b' ' | b'\t' | b'\r') => r.consume(1),
                    Some(_) => break,
                }
            }
            continue;
        }
        let mut token = Vec::new();
        while let Some(c) = peek(r) {
            if is_blank(c) {
                break;
            }
            token.push(c);
            r.consume(1);
        }
        if token.as_slice() != b"ipvsadm" {
            a.push(token);
            ntoken += 1;
        }
        if let Some(c) = peek(r) {
            r.consume(1);
            if c == b'\n' {
                return Some(a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &str) -> Vec<Vec<String>> {
        let mut r = input.as_bytes();
        let mut out = Vec::new();
        while let Some(a) = read_argv(&mut r, b"ipvsadm") {
            out.push(a[1..].iter().map(|t| String::from_utf8_lossy(t).into_owned()).collect());
        }
        out
    }

    #[test]
    fn tokenising() {
        assert_eq!(lines("-A -t x\n\n  \n\t-C\t-n  \n"), vec![vec!["-A", "-t", "x"], vec![], vec![], vec!["-C", "-n"]]);
        assert_eq!(lines("ipvsadm -C\n-A ipvsadm\n"), vec![vec!["-C"], vec!["-A"]]);
        assert_eq!(lines("-C\r\n-L"), vec![vec!["-C"], vec!["-L"]]);
        // Trailing blanks then end of input without newline: the line is lost.
        assert_eq!(lines("-C\n-L  "), vec![vec!["-C"]]);
        assert_eq!(lines(""), Vec::<Vec<String>>::new());
        assert_eq!(lines("# c\n"), vec![vec!["#", "c"]]);
    }
}
