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
    /// `a{key: value, ...}`: the items of `a` grouped by key.
    Group(Box<Expr>, Vec<(Expr, Expr)>),
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
    /// Nested calls of `expr_d`: each parses a child of a node under construction, so
    /// it never exceeds the depth of the tree; bounded before the recursion goes on.
    nesting: usize,
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
        // Below `.`, so that `a.b{...}` groups the whole path, as JSONata does.
        "{" => 70,
        "*" | "/" | "%" => 60,
        "+" | "-" | "&" => 50,
        "=" | "!=" | "<" | "<=" | ">" | ">=" | "~>" => 40,
        "??" | "?:" => 35,
        "?" => 20,
        ":=" => 10,
        _ => return None,
    })
}

/// An expression with the depth of its syntax tree.
type Parsed = (Expr, usize);

fn too_deep() -> ParseError {
    format!(
        "S0215: The expression nests deeper than {} levels (the limit of the interpreter)",
        crate::limits::MAX_EXPRESSION_DEPTH
    )
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

    /// A node over children of depth `child`: fails past the limit, so that no tree
    /// deeper than it is ever built (evaluating or dropping one would recurse as deep).
    fn node(child: usize) -> Result<usize, ParseError> {
        let d = child + 1;
        if d > crate::limits::MAX_EXPRESSION_DEPTH {
            return Err(too_deep());
        }
        Ok(d)
    }

    fn expr(&mut self, min: u8) -> Result<Expr, ParseError> {
        self.expr_d(min).map(|(e, _)| e)
    }

    fn expr_d(&mut self, min: u8) -> Result<Parsed, ParseError> {
        if self.nesting >= crate::limits::MAX_EXPRESSION_DEPTH {
            return Err(too_deep());
        }
        self.nesting += 1;
        let r = self.expr_nested(min);
        self.nesting -= 1;
        r
    }

    fn expr_nested(&mut self, min: u8) -> Result<Parsed, ParseError> {
        let (mut lhs, mut depth) = self.prefix()?;
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
            (lhs, depth) = match op.as_str() {
                "." => {
                    let (rhs, d) = self.expr_d(bp)?;
                    (Expr::Path(Box::new(lhs), Box::new(rhs)), Self::node(depth.max(d))?)
                }
                "[" => {
                    if self.is_op("]") {
                        self.pos += 1;
                        (lhs, depth)
                    } else {
                        let (idx, d) = self.expr_d(0)?;
                        self.expect("]")?;
                        (Expr::Index(Box::new(lhs), Box::new(idx)), Self::node(depth.max(d))?)
                    }
                }
                "(" => {
                    let (args, d) = self.list(")")?;
                    (Expr::Call(Box::new(lhs), args), Self::node(depth.max(d))?)
                }
                "{" => {
                    let (pairs, d) = self.pairs()?;
                    (Expr::Group(Box::new(lhs), pairs), Self::node(depth.max(d))?)
                }
                "?" => {
                    let (then, d1) = self.expr_d(0)?;
                    let (otherwise, d2) = if self.is_op(":") {
                        self.pos += 1;
                        let (e, d) = self.expr_d(0)?;
                        (Some(Box::new(e)), d)
                    } else {
                        (None, 0)
                    };
                    (Expr::Cond(Box::new(lhs), Box::new(then), otherwise), Self::node(depth.max(d1).max(d2))?)
                }
                ":=" => {
                    let Expr::Var(name) = lhs else {
                        return Err("S0212: The left side of := must be a variable name (start with $)".into());
                    };
                    let (rhs, d) = self.expr_d(bp - 1)?;
                    (Expr::Bind(name, Box::new(rhs)), Self::node(d)?)
                }
                _ => {
                    let (rhs, d) = self.expr_d(bp)?;
                    (Expr::Binary(op, Box::new(lhs), Box::new(rhs)), Self::node(depth.max(d))?)
                }
            };
        }
        Ok((lhs, depth))
    }

    /// The `key: value` pairs of an object constructor or a group-by, after its `{`.
    fn pairs(&mut self) -> Result<(Vec<(Expr, Expr)>, usize), ParseError> {
        let mut pairs = Vec::new();
        let mut depth = 0;
        if self.is_op("}") {
            self.pos += 1;
            return Ok((pairs, depth));
        }
        loop {
            let (k, dk) = self.expr_d(0)?;
            self.expect(":")?;
            let (v, dv) = self.expr_d(0)?;
            pairs.push((k, v));
            depth = depth.max(dk).max(dv);
            if self.is_op(",") {
                self.pos += 1;
            } else {
                self.expect("}")?;
                return Ok((pairs, depth));
            }
        }
    }

    /// A comma-separated list up to `close`, with the depth of its deepest item.
    fn list(&mut self, close: &str) -> Result<(Vec<Expr>, usize), ParseError> {
        let mut items = Vec::new();
        let mut depth = 0;
        if self.is_op(close) {
            self.pos += 1;
            return Ok((items, depth));
        }
        loop {
            let (e, d) = self.expr_d(0)?;
            items.push(e);
            depth = depth.max(d);
            if self.is_op(",") {
                self.pos += 1;
            } else {
                self.expect(close)?;
                return Ok((items, depth));
            }
        }
    }

    fn prefix(&mut self) -> Result<Parsed, ParseError> {
        let t = self.next().ok_or("S0207: Unexpected end of expression")?;
        Ok(match t {
            Tok::Num(n) => (Expr::Num(n), 1),
            Tok::Str(s) => (Expr::Str(s), 1),
            Tok::Regex(r) => (Expr::Regex(r), 1),
            Tok::Var(v) => (Expr::Var(v), 1),
            Tok::Name(n) => match n.as_str() {
                "true" => (Expr::Bool(true), 1),
                "false" => (Expr::Bool(false), 1),
                "null" => (Expr::Null, 1),
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
                    let (body, d) = self.expr_d(0)?;
                    self.expect("}")?;
                    (Expr::Lambda(Rc::new(Lambda { params, body })), Self::node(d)?)
                }
                _ => (Expr::Name(n), 1),
            },
            Tok::Op(o) => match o.as_str() {
                "-" => {
                    let (e, d) = self.expr_d(70)?;
                    (Expr::Neg(Box::new(e)), Self::node(d)?)
                }
                "(" => {
                    let mut items = Vec::new();
                    let mut depth = 0;
                    while !self.is_op(")") {
                        let (e, d) = self.expr_d(0)?;
                        items.push(e);
                        depth = depth.max(d);
                        if self.is_op(";") {
                            self.pos += 1;
                        } else {
                            break;
                        }
                    }
                    self.expect(")")?;
                    (Expr::Block(items), Self::node(depth)?)
                }
                "[" => {
                    let (items, d) = self.list("]")?;
                    (Expr::Array(items), Self::node(d)?)
                }
                "{" => {
                    let (pairs, depth) = self.pairs()?;
                    (Expr::Object(pairs), Self::node(depth)?)
                }
                "*" => (Expr::Name("*".into()), 1),
                other => return Err(format!("S0211: The symbol {other} cannot be used as a unary operator")),
            },
        })
    }
}

/// Parses a JSONata expression. Its syntax tree may nest at most
/// [`crate::limits::MAX_EXPRESSION_DEPTH`] levels.
pub fn parse(src: &str) -> Result<Expr, ParseError> {
    let toks = tokenize(src)?;
    let mut p = Parser { toks, pos: 0, nesting: 0 };
    let e = p.expr(0)?;
    if p.pos < p.toks.len() {
        return Err(format!("S0201: Syntax error: unexpected {:?}", p.toks[p.pos]));
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn parser_never_panics(text in "[-$a-c0-9()\\[\\]{}.,;:?=<>+*/%&~'\" ]{0,80}") {
            let _ = parse(&text);
        }

        /// Random nestings of openers, as deep as one likes: refused or parsed, never a
        /// stack overflow.
        #[test]
        fn deep_random_nesting_never_overflows(openers in proptest::collection::vec(0usize..6, 0..1000)) {
            let (open, close) = (["(", "[", "{'a':", "-", "$f(", "function($x){"], [")", "]", "}", "", ")", "}"]);
            let mut text: String = openers.iter().map(|&i| open[i]).collect();
            text.push('1');
            text.extend(openers.iter().rev().map(|&i| close[i]));
            match parse(&text) {
                Ok(_) => prop_assert!(openers.len() < crate::limits::MAX_EXPRESSION_DEPTH),
                Err(e) => prop_assert!(e.starts_with("S0215"), "{}", e),
            }
        }
    }

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

    #[test]
    fn deep_expressions_are_refused_not_overflowing() {
        let limit = crate::limits::MAX_EXPRESSION_DEPTH;
        let nested = |n: usize| format!("{}1{}", "(".repeat(n), ")".repeat(n));
        assert!(parse(&nested(limit - 1)).is_ok());
        for text in [
            nested(20_000),
            format!("{}1{}", "[".repeat(20_000), "]".repeat(20_000)),
            format!("{}1", "-".repeat(20_000)),
            format!("$f{}", "(1)".repeat(20_000)),
            format!("1{}", " + 1".repeat(20_000)),
            format!("a{}", ".b".repeat(20_000)),
            format!("{}1{}", "$f(".repeat(20_000), ")".repeat(20_000)),
            format!("{}1{}", "{'a':".repeat(20_000), "}".repeat(20_000)),
            format!("{}1{}", "function($x){".repeat(20_000), "}".repeat(20_000)),
        ] {
            let e = parse(&text).unwrap_err();
            assert!(e.starts_with("S0215"), "{e}");
        }
    }
}
