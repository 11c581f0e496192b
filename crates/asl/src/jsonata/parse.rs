//! Tokenizer and Pratt parser for the JSONata subset the interpreter supports.

use std::rc::Rc;

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Num(f64),
    Str(String),
    Bool(bool),
    Null,
    Regex(String),
    /// `$name`; `$` alone is the context item.
    Var(String),
    /// A bare field name of the context item.
    Name(String),
    Path(Box<Expr>, Box<Expr>),
    /// `a[...]`: index or filter.
    Index(Box<Expr>, Box<Expr>),
    Array(Vec<Expr>),
    Object(Vec<(Expr, Expr)>),
    Binary(String, Box<Expr>, Box<Expr>),
    Neg(Box<Expr>),
    Call(Box<Expr>, Vec<Expr>),
    Lambda(Rc<Lambda>),
    Bind(String, Box<Expr>),
    Block(Vec<Expr>),
    Cond(Box<Expr>, Box<Expr>, Option<Box<Expr>>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Lambda {
    pub params: Vec<String>,
    pub body: Expr,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Str(String),
    Name(String),
    Var(String),
    Regex(String),
    Op(String),
}

/// A parse error with a JSONata-style code.
pub type ParseError = String;

fn tokenize(src: &str) -> Result<Vec<Tok>, ParseError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out: Vec<Tok> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
            continue;
        }
        let operand_expected = matches!(out.last(), None | Some(Tok::Op(_)))
            && !matches!(out.last(), Some(Tok::Op(o)) if o == ")" || o == "]" || o == "}");
        if c == '/' && operand_expected {
            let mut s = String::new();
            i += 1;
            while i < chars.len() && chars[i] != '/' {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    s.push(chars[i]);
                    i += 1;
                }
                s.push(chars[i]);
                i += 1;
            }
            i += 1;
            let mut flags = String::new();
            while i < chars.len() && chars[i].is_ascii_alphabetic() {
                flags.push(chars[i]);
                i += 1;
            }
            if flags.contains('i') {
                s = format!("(?i){s}");
            }
            out.push(Tok::Regex(s));
            continue;
        }
        if c == '"' || c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                let Some(&d) = chars.get(i) else {
                    return Err("S0101: String literal must be terminated by a matching quote".into());
                };
                i += 1;
                if d == c {
                    break;
                }
                if d == '\\' {
                    let e = chars.get(i).copied().unwrap_or('\\');
                    i += 1;
                    match e {
                        'n' => s.push('\n'),
                        't' => s.push('\t'),
                        'r' => s.push('\r'),
                        'b' => s.push('\u{8}'),
                        'f' => s.push('\u{c}'),
                        'u' => {
                            let hex: String = chars.iter().skip(i).take(4).collect();
                            i += 4;
                            let code = u32::from_str_radix(&hex, 16).map_err(|_| "S0104: invalid unicode escape")?;
                            s.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                        }
                        other => s.push(other),
                    }
                } else {
                    s.push(d);
                }
            }
            out.push(Tok::Str(s));
            continue;
        }
        if c.is_ascii_digit() {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_digit()
                    || chars[i] == '.' && chars.get(i + 1).is_some_and(|x| x.is_ascii_digit()))
            {
                i += 1;
            }
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                i += 1;
                if i < chars.len() && (chars[i] == '+' || chars[i] == '-') {
                    i += 1;
                }
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            let text: String = chars[start..i].iter().collect();
            out.push(Tok::Num(text.parse().map_err(|_| format!("S0102: invalid number {text}"))?));
            continue;
        }
        if c == '`' {
            let start = i + 1;
            i += 1;
            while i < chars.len() && chars[i] != '`' {
                i += 1;
            }
            out.push(Tok::Name(chars[start..i].iter().collect()));
            i += 1;
            continue;
        }
        let is_ident = |x: char| x.is_alphanumeric() || x == '_';
        if c == '$' {
            let start = i + 1;
            i += 1;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            out.push(Tok::Var(chars[start..i].iter().collect()));
            continue;
        }
        if is_ident(c) {
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            out.push(Tok::Name(chars[start..i].iter().collect()));
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        if [":=", "!=", "<=", ">=", "~>", "..", "??", "?:"].contains(&two.as_str()) {
            out.push(Tok::Op(two));
            i += 2;
            continue;
        }
        if "()[]{},.;:?=<>+-*/%&".contains(c) {
            out.push(Tok::Op(c.to_string()));
            i += 1;
            continue;
        }
        return Err(format!("S0204: unknown operator {c:?}"));
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

fn infix_power(t: &Tok) -> Option<u8> {
    let Tok::Op(o) = t else {
        return match t {
            Tok::Name(n) if n == "and" => Some(30),
            Tok::Name(n) if n == "or" => Some(25),
            Tok::Name(n) if n == "in" => Some(40),
            _ => None,
        };
    };
    Some(match o.as_str() {
        "." => 75,
        "[" | "(" => 80,
        "*" | "/" | "%" => 60,
        "+" | "-" | "&" => 50,
        "=" | "!=" | "<" | "<=" | ">" | ">=" | "~>" => 40,
        "??" | "?:" => 35,
        "?" => 20,
        ":=" => 10,
        _ => return None,
    })
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn is_op(&self, o: &str) -> bool {
        matches!(self.peek(), Some(Tok::Op(x)) if x == o)
    }

    fn expect(&mut self, o: &str) -> Result<(), ParseError> {
        if self.is_op(o) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("S0202: Expected {o:?}, got {:?}", self.peek()))
        }
    }

    fn expr(&mut self, min: u8) -> Result<Expr, ParseError> {
        let mut lhs = self.prefix()?;
        while let Some(t) = self.peek().cloned() {
            let Some(bp) = infix_power(&t) else { break };
            if bp <= min {
                break;
            }
            self.pos += 1;
            let op = match &t {
                Tok::Op(o) => o.clone(),
                Tok::Name(n) => n.clone(),
                _ => unreachable!("infix tokens are operators"),
            };
            lhs = match op.as_str() {
                "." => Expr::Path(Box::new(lhs), Box::new(self.expr(bp)?)),
                "[" => {
                    if self.is_op("]") {
                        self.pos += 1;
                        lhs
                    } else {
                        let idx = self.expr(0)?;
                        self.expect("]")?;
                        Expr::Index(Box::new(lhs), Box::new(idx))
                    }
                }
                "(" => {
                    let args = self.list(")")?;
                    Expr::Call(Box::new(lhs), args)
                }
                "?" => {
                    let then = self.expr(0)?;
                    let otherwise = if self.is_op(":") {
                        self.pos += 1;
                        Some(Box::new(self.expr(0)?))
                    } else {
                        None
                    };
                    Expr::Cond(Box::new(lhs), Box::new(then), otherwise)
                }
                ":=" => {
                    let Expr::Var(name) = lhs else {
                        return Err("S0212: The left side of := must be a variable name (start with $)".into());
                    };
                    Expr::Bind(name, Box::new(self.expr(bp - 1)?))
                }
                _ => Expr::Binary(op, Box::new(lhs), Box::new(self.expr(bp)?)),
            };
        }
        Ok(lhs)
    }

    fn list(&mut self, close: &str) -> Result<Vec<Expr>, ParseError> {
        let mut items = Vec::new();
        if self.is_op(close) {
            self.pos += 1;
            return Ok(items);
        }
        loop {
            items.push(self.expr(0)?);
            if self.is_op(",") {
                self.pos += 1;
            } else {
                self.expect(close)?;
                return Ok(items);
            }
        }
    }

    fn prefix(&mut self) -> Result<Expr, ParseError> {
        let t = self.next().ok_or("S0207: Unexpected end of expression")?;
        Ok(match t {
            Tok::Num(n) => Expr::Num(n),
            Tok::Str(s) => Expr::Str(s),
            Tok::Regex(r) => Expr::Regex(r),
            Tok::Var(v) => Expr::Var(v),
            Tok::Name(n) => match n.as_str() {
                "true" => Expr::Bool(true),
                "false" => Expr::Bool(false),
                "null" => Expr::Null,
                "function" | "λ" if self.is_op("(") => {
                    self.pos += 1;
                    let mut params = Vec::new();
                    while !self.is_op(")") {
                        match self.next() {
                            Some(Tok::Var(v)) => params.push(v),
                            other => return Err(format!("S0208: bad parameter {other:?}")),
                        }
                        if self.is_op(",") {
                            self.pos += 1;
                        }
                    }
                    self.pos += 1;
                    self.expect("{")?;
                    let body = self.expr(0)?;
                    self.expect("}")?;
                    Expr::Lambda(Rc::new(Lambda { params, body }))
                }
                _ => Expr::Name(n),
            },
            Tok::Op(o) => match o.as_str() {
                "-" => Expr::Neg(Box::new(self.expr(70)?)),
                "(" => {
                    let mut items = Vec::new();
                    while !self.is_op(")") {
                        items.push(self.expr(0)?);
                        if self.is_op(";") {
                            self.pos += 1;
                        } else {
                            break;
                        }
                    }
                    self.expect(")")?;
                    Expr::Block(items)
                }
                "[" => Expr::Array(self.list("]")?),
                "{" => {
                    let mut pairs = Vec::new();
                    if self.is_op("}") {
                        self.pos += 1;
                    } else {
                        loop {
                            let k = self.expr(0)?;
                            self.expect(":")?;
                            let v = self.expr(0)?;
                            pairs.push((k, v));
                            if self.is_op(",") {
                                self.pos += 1;
                            } else {
                                self.expect("}")?;
                                break;
                            }
                        }
                    }
                    Expr::Object(pairs)
                }
                "*" => Expr::Name("*".into()),
                other => return Err(format!("S0211: The symbol {other} cannot be used as a unary operator")),
            },
        })
    }
}

/// Parses a JSONata expression.
pub fn parse(src: &str) -> Result<Expr, ParseError> {
    let toks = tokenize(src)?;
    let mut p = Parser { toks, pos: 0 };
    let e = p.expr(0)?;
    if p.pos < p.toks.len() {
        return Err(format!("S0201: Syntax error: unexpected {:?}", p.toks[p.pos]));
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths_calls_and_operators() {
        assert!(matches!(parse("$states.input.a").unwrap(), Expr::Path(..)));
        assert!(matches!(parse("$sum($x) + 1").unwrap(), Expr::Binary(op, ..) if op == "+"));
        assert!(matches!(parse("$a := 1").unwrap(), Expr::Bind(..)));
        assert!(matches!(parse("function($x){$x}").unwrap(), Expr::Lambda(_)));
        assert!(matches!(parse("$contains('a', /^a\\$/)").unwrap(), Expr::Call(..)));
        assert!(matches!(parse("{'a': [1, 'two']}").unwrap(), Expr::Object(_)));
        assert!(parse("(1").is_err());
        assert!(parse("'abc").is_err());
    }
}
