//! Behaviours checked against Step Functions' documentation where the recorded corpus
//! (`conformance.rs`) has no case: intrinsic escapes, definition checks, JSONata's
//! function library, Choice comparisons with operands of another type.
//!
//! Definitions are written as JSON text, as a user sends them, so JSON's escapes and
//! the intrinsic functions' escapes are both exercised.

use serde_json::{json, Value};
use tenancy_asl::{Action, ExecutionContext, StateMachine};

const T0: i64 = 1_700_000_000_000;

fn ctx() -> ExecutionContext {
    ExecutionContext::new("sm", "exec-1", json!({}), T0)
}

fn parse_text(text: &str) -> Result<StateMachine, String> {
    let def: Value = serde_json::from_str(text).expect("the test's JSON text parses");
    StateMachine::parse(&def).map_err(|e| e.to_string())
}

/// Runs a machine of synchronous states to its end.
fn run(machine: &StateMachine, input: Value) -> Action {
    machine.start(&ctx(), input, T0).action
}

/// The output of a one-state Pass machine whose `Parameters` are `{"r.$": <expr>}`,
/// `expr_json` being the expression as it appears in JSON text (quotes included).
fn pass_parameter(expr_json: &str, input: Value) -> Result<Value, String> {
    let text = format!(
        r#"{{"StartAt": "P", "States": {{"P": {{"Type": "Pass", "Parameters": {{"r.$": {expr_json}}}, "End": true}}}}}}"#
    );
    match run(&parse_text(&text)?, input) {
        Action::Succeeded { output } => Ok(output["r"].clone()),
        Action::Failed { error, cause } => Err(format!("{error:?}: {cause:?}")),
        other => panic!("unexpected action {other:?}"),
    }
}

#[test]
fn intrinsic_string_escapes_are_resolved_once() {
    // JSON text `'a\\\\b'` is the intrinsic literal 'a\\b': an escaped backslash.
    assert_eq!(pass_parameter(r#""States.Format('a\\\\b')""#, json!({})), Ok(json!("a\\b")));
    // `\\{}` in JSON is `\{}` in the intrinsic: an escaped brace then a lone one, not a placeholder.
    assert_eq!(pass_parameter(r#""States.Format('\\{}')""#, json!({})), Ok(json!("{}")));
    assert_eq!(pass_parameter(r#""States.Format('\\{\\}')""#, json!({})), Ok(json!("{}")));
    // An escaped backslash before a placeholder leaves the placeholder a placeholder.
    assert_eq!(pass_parameter(r#""States.Format('\\\\{}', $.x)""#, json!({"x": 7})), Ok(json!("\\7")));
    assert_eq!(
        pass_parameter(r#""States.Format('it\\'s {} \\{\\} \\\\', $.x)""#, json!({"x": "ok"})),
        Ok(json!("it's ok {} \\"))
    );
    // The same literal outside States.Format: the escapes are resolved once too.
    assert_eq!(pass_parameter(r#""States.Array('a\\\\b', '\\{\\}')""#, json!({})), Ok(json!(["a\\b", "{}"])));
    // A template that comes from the input is data: no escapes, every {} a placeholder.
    assert_eq!(
        pass_parameter(r#""States.Format($.t, $.x)""#, json!({"t": "C:\\dir\\{}", "x": "f"})),
        Ok(json!("C:\\dir\\f"))
    );
    // A backslash before another character is not an escape: refused at parse time.
    let e = pass_parameter(r#""States.Format('a\\b')""#, json!({})).unwrap_err();
    assert!(e.contains("invalid escape"), "{e}");
}

#[test]
fn a_template_with_both_x_and_x_path_is_refused() {
    let e = parse_text(
        r#"{"StartAt": "P", "States": {"P": {"Type": "Pass", "Parameters": {"x": 1, "x.$": "$.y"}, "End": true}}}"#,
    )
    .expect_err("refused");
    assert!(e.starts_with(r#"state "P", field "Parameters": the template has both "x" and "x.$""#), "{e}");
    // Nested objects, ResultSelector, ItemSelector, Assign, a catcher's Assign.
    for (state, field) in [
        (r#"{"Type": "Pass", "Parameters": {"a": {"k.$": "$", "k": 0}}, "End": true}"#, "Parameters"),
        (r#"{"Type": "Task", "Resource": "r", "ResultSelector": {"k": 0, "k.$": "$"}, "End": true}"#, "ResultSelector"),
        (
            r#"{"Type": "Map", "ItemSelector": {"k.$": "$", "k": 0}, "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Succeed"}}}, "End": true}"#,
            "ItemSelector",
        ),
        (r#"{"Type": "Pass", "Assign": {"v": 1, "v.$": "$"}, "End": true}"#, "Assign"),
        (
            r#"{"Type": "Task", "Resource": "r", "Catch": [{"ErrorEquals": ["States.ALL"], "Assign": {"v": 1, "v.$": "$"}, "Next": "S"}], "End": true}"#,
            "Catch",
        ),
    ] {
        let text = format!(r#"{{"StartAt": "A", "States": {{"A": {state}, "S": {{"Type": "Succeed"}}}}}}"#);
        let text = if field == "Catch" { text } else { text.replace(r#", "S": {"Type": "Succeed"}"#, "") };
        let e = parse_text(&text).err().unwrap_or_else(|| panic!("{state} accepted"));
        assert!(e.starts_with(&format!(r#"state "A", field "{field}": the template has both"#)), "{e}");
    }
    // Either one alone is fine, and in JSONata `.$` is not special.
    assert!(parse_text(
        r#"{"StartAt": "P", "States": {"P": {"Type": "Pass", "Parameters": {"x": 1, "y.$": "$.y"}, "End": true}}}"#
    )
    .is_ok());
    assert!(parse_text(r#"{"QueryLanguage": "JSONata", "StartAt": "P", "States": {"P": {"Type": "Pass", "Output": {"x": 1, "x.$": "$.y"}, "End": true}}}"#).is_ok());
}

#[test]
fn state_names_are_unique_across_the_whole_machine() {
    let branch =
        |name: &str| format!(r#"{{"StartAt": "{name}", "States": {{"{name}": {{"Type": "Pass", "End": true}}}}}}"#);
    // A branch reusing a top-level name.
    let text = format!(
        r#"{{"StartAt": "Fan", "States": {{"Fan": {{"Type": "Parallel", "Branches": [{}], "Next": "Done"}}, "Done": {{"Type": "Succeed"}}}}}}"#,
        branch("Done")
    );
    let e = parse_text(&text).expect_err("refused");
    assert!(e.starts_with(r#"state "Done": state names must be unique in the whole state machine"#), "{e}");
    assert!(e.contains(r#"branch 0 of Parallel state "Fan""#), "{e}");
    // Two branches of one Parallel state.
    let text = format!(
        r#"{{"StartAt": "Fan", "States": {{"Fan": {{"Type": "Parallel", "Branches": [{}, {}], "End": true}}}}}}"#,
        branch("Work"),
        branch("Work")
    );
    let e = parse_text(&text).expect_err("refused");
    assert!(e.contains(r#"state "Work": state names must be unique"#), "{e}");
    // A Map processor inside a Parallel branch reusing a name of another branch.
    let map = format!(
        r#"{{"StartAt": "M", "States": {{"M": {{"Type": "Map", "ItemProcessor": {}, "End": true}}}}}}"#,
        branch("Work")
    );
    let text = format!(
        r#"{{"StartAt": "Fan", "States": {{"Fan": {{"Type": "Parallel", "Branches": [{}, {map}], "End": true}}}}}}"#,
        branch("Work")
    );
    let e = parse_text(&text).expect_err("refused");
    assert!(e.contains(r#"the processor of Map state "M""#), "{e}");
    // Distinct names everywhere are fine.
    let text = format!(
        r#"{{"StartAt": "Fan", "States": {{"Fan": {{"Type": "Parallel", "Branches": [{}, {}], "End": true}}}}}}"#,
        branch("A"),
        branch("B")
    );
    assert!(parse_text(&text).is_ok());
}

#[test]
fn tolerated_failure_thresholds_are_bounded() {
    let map = |fields: &str| {
        format!(
            r#"{{"StartAt": "M", "States": {{"M": {{"Type": "Map", {fields} "ItemProcessor": {{"StartAt": "I", "States": {{"I": {{"Type": "Succeed"}}}}}}, "End": true}}}}}}"#
        )
    };
    for (fields, message) in [
        (
            r#""ToleratedFailurePercentage": 101,"#,
            r#"field "ToleratedFailurePercentage": must be a number from 0 to 100"#,
        ),
        (
            r#""ToleratedFailurePercentage": -1,"#,
            r#"field "ToleratedFailurePercentage": must be a number from 0 to 100"#,
        ),
        (r#""ToleratedFailureCount": -1,"#, r#"field "ToleratedFailureCount": must be a non-negative integer"#),
        (r#""ToleratedFailureCount": 1.5,"#, r#"field "ToleratedFailureCount": must be a non-negative integer"#),
    ] {
        let e = parse_text(&map(fields)).err().unwrap_or_else(|| panic!("{fields} accepted"));
        assert!(e.contains(message), "{fields}: {e}");
    }
    for fields in [
        r#""ToleratedFailurePercentage": 0,"#,
        r#""ToleratedFailurePercentage": 100,"#,
        r#""ToleratedFailurePercentage": 12.5,"#,
        r#""ToleratedFailureCount": 0,"#,
    ] {
        assert!(parse_text(&map(fields)).is_ok(), "{fields}");
    }
    // From a path, the same bounds are checked when the Map state runs.
    let m = parse_text(&map(r#""ToleratedFailurePercentagePath": "$.p", "ItemsPath": "$.items","#)).unwrap();
    let Action::Failed { error, cause } = run(&m, json!({"p": 150, "items": [1]})) else {
        panic!("expected a failure")
    };
    assert_eq!(error.as_deref(), Some("States.Runtime"));
    assert!(cause.unwrap_or_default().contains("ToleratedFailurePercentage must be a number from 0 to 100"));
}

/// The output of a one-state JSONata Pass machine whose `Output` is `{% expr %}`.
fn jsonata_output(expr: &str, input: Value) -> Result<Value, String> {
    let def = json!({"QueryLanguage": "JSONata", "StartAt": "P",
        "States": {"P": {"Type": "Pass", "Output": format!("{{% {expr} %}}"), "End": true}}});
    let m = StateMachine::parse(&def).map_err(|e| format!("refused: {e}"))?;
    match run(&m, input) {
        Action::Succeeded { output } => Ok(output),
        Action::Failed { error, cause } => Err(format!("failed: {error:?}: {cause:?}")),
        other => panic!("unexpected action {other:?}"),
    }
}

#[test]
fn jsonata_group_by_on_a_path() {
    let input = json!({"orders": [
        {"product": "hat", "price": 10, "qty": 1},
        {"product": "scarf", "price": 5, "qty": 2},
        {"product": "hat", "price": 12, "qty": 3}
    ]});
    assert_eq!(
        jsonata_output("$states.input.orders{product: $sum(price)}", input.clone()),
        Ok(json!({"hat": 22, "scarf": 5}))
    );
    // A filter before the grouping, and a value that sees the group as its context.
    assert_eq!(
        jsonata_output("$states.input.orders[qty > 1]{product: {'n': $count($), 'qty': $sum(qty)}}", input.clone()),
        Ok(json!({"scarf": {"n": 1, "qty": 2}, "hat": {"n": 1, "qty": 3}}))
    );
    assert_eq!(
        jsonata_output("$states.input.orders{product: qty}", input.clone()),
        Ok(json!({"hat": [1, 3], "scarf": 2}))
    );
    // Two pairs giving the same key: D1009, as in JSONata.
    let e = jsonata_output("$states.input.orders{product: 1, 'hat': 2}", input).unwrap_err();
    assert!(e.contains("D1009"), "{e}");
}

#[test]
fn jsonata_match_and_each() {
    assert_eq!(
        jsonata_output("$match('ababbabbcc', /a(b+)/)", json!({})),
        Ok(json!([
            {"match": "ab", "index": 0, "groups": ["b"]},
            {"match": "abb", "index": 2, "groups": ["bb"]},
            {"match": "abb", "index": 5, "groups": ["bb"]}
        ]))
    );
    assert_eq!(
        jsonata_output("$match('ababbabbcc', /a(b+)/, 1)", json!({})),
        Ok(json!({"match": "ab", "index": 0, "groups": ["b"]}))
    );
    assert_eq!(
        jsonata_output("$each($states.input, function($v, $k){ $k & '=' & $v })", json!({"a": 1, "b": "x"})),
        Ok(json!(["a=1", "b=x"]))
    );
}

/// Every function of JSONata 2.x's library (https://docs.jsonata.org, "Function
/// library"), and Step Functions' additions: each one either works or is refused when
/// the definition is parsed, naming it. None fails only at run time.
#[test]
fn every_jsonata_library_function_works_or_is_refused_at_parse() {
    const REFUSED: Option<Value> = None;
    let cases: Vec<(&str, &str, Option<Value>)> = vec![
        // String functions
        ("string", "$string({'a': [1, true]})", Some(json!("{\"a\":[1,true]}"))),
        ("length", "$length('héllo')", Some(json!(5))),
        ("substring", "$substring('Hello World', 3, 5)", Some(json!("lo Wo"))),
        ("substringBefore", "$substringBefore('Hello World', ' ')", Some(json!("Hello"))),
        ("substringAfter", "$substringAfter('Hello World', ' ')", Some(json!("World"))),
        ("uppercase", "$uppercase('Hello')", Some(json!("HELLO"))),
        ("lowercase", "$lowercase('Hello')", Some(json!("hello"))),
        ("trim", "$trim('  a   b ')", Some(json!("a b"))),
        ("pad", "[$pad('foo', 5), $pad('foo', -5, '#')]", Some(json!(["foo  ", "##foo"]))),
        ("contains", "$contains('abracadabra', 'bra')", Some(json!(true))),
        ("split", "$split('a,b,c', ',')", Some(json!(["a", "b", "c"]))),
        ("join", "$join(['a', 'b'], '-')", Some(json!("a-b"))),
        ("match", "$match('a1b22', /[0-9]+/).match", Some(json!(["1", "22"]))),
        ("replace", "$replace('John Smith', 'John', 'Mr')", Some(json!("Mr Smith"))),
        ("eval", "$eval('1 + 1')", REFUSED),
        ("base64encode", "$base64encode('hello')", Some(json!("aGVsbG8="))),
        ("base64decode", "$base64decode('aGVsbG8=')", Some(json!("hello"))),
        ("encodeUrlComponent", "$encodeUrlComponent('?x=test value')", Some(json!("%3Fx%3Dtest%20value"))),
        (
            "encodeUrl",
            "$encodeUrl('https://mozilla.org/?x=шеллы')",
            Some(json!("https://mozilla.org/?x=%D1%88%D0%B5%D0%BB%D0%BB%D1%8B")),
        ),
        ("decodeUrlComponent", "$decodeUrlComponent('%3Fx%3Dtest')", Some(json!("?x=test"))),
        ("decodeUrl", "$decodeUrl('https://mozilla.org/?x=%D1%88')", Some(json!("https://mozilla.org/?x=ш"))),
        // Numeric functions
        ("number", "$number('42')", Some(json!(42))),
        ("abs", "$abs(-5)", Some(json!(5))),
        ("floor", "$floor(5.8)", Some(json!(5))),
        ("ceil", "$ceil(5.2)", Some(json!(6))),
        ("round", "$round(123.456, 2)", Some(json!(123.46))),
        ("power", "$power(2, 8)", Some(json!(256))),
        ("sqrt", "$sqrt(16)", Some(json!(4))),
        ("random", "$random() < 1", Some(json!(true))),
        ("formatNumber", "$formatNumber(1234.5, '#,##0.00')", REFUSED),
        ("formatBase", "$formatBase(100, 2)", Some(json!("1100100"))),
        ("formatInteger", "$formatInteger(12, 'w')", REFUSED),
        ("parseInteger", "$parseInteger('twelve', 'w')", REFUSED),
        // Aggregation functions
        ("sum", "$sum([1, 2, 3])", Some(json!(6))),
        ("max", "$max([1, 5, 3])", Some(json!(5))),
        ("min", "$min([4, 2, 3])", Some(json!(2))),
        ("average", "$average([1, 2, 3])", Some(json!(2))),
        // Boolean functions
        ("boolean", "$boolean('x')", Some(json!(true))),
        ("not", "$not(true)", Some(json!(false))),
        ("exists", "$exists($states.input.nope)", Some(json!(false))),
        // Array functions
        ("count", "$count([1, 2, 3])", Some(json!(3))),
        ("append", "$append([1, 2], [3])", Some(json!([1, 2, 3]))),
        ("sort", "$sort([3, 1, 2], function($a, $b){ $a < $b })", Some(json!([3, 2, 1]))),
        ("reverse", "$reverse([1, 2, 3])", Some(json!([3, 2, 1]))),
        ("shuffle", "$sort($shuffle([3, 1, 2]))", Some(json!([1, 2, 3]))),
        ("distinct", "$distinct([1, 2, 1])", Some(json!([1, 2]))),
        ("zip", "$zip([1, 2], ['a', 'b'])", Some(json!([[1, "a"], [2, "b"]]))),
        // Object functions
        ("keys", "$keys({'a': 1, 'b': 2})", Some(json!(["a", "b"]))),
        ("lookup", "$lookup({'a': 1}, 'a')", Some(json!(1))),
        ("spread", "$spread({'a': 1, 'b': 2})", Some(json!([{"a": 1}, {"b": 2}]))),
        ("merge", "$merge([{'a': 1}, {'b': 2}])", Some(json!({"a": 1, "b": 2}))),
        ("sift", "$sift({'a': 1, 'b': 2}, function($v){ $v > 1 })", Some(json!({"b": 2}))),
        ("each", "$each({'a': 1}, function($v, $k){ $k & $v })", Some(json!("a1"))),
        ("error", "$exists($states.input) ? 1 : $error('boom')", Some(json!(1))),
        ("assert", "($assert(true, 'never'); 'ok')", Some(json!("ok"))),
        ("type", "$type([1])", Some(json!("array"))),
        // Date/time functions
        ("now", "$now()", REFUSED),
        ("millis", "$millis()", REFUSED),
        ("fromMillis", "$fromMillis(1510067557121)", Some(json!("2017-11-07T15:12:37.121Z"))),
        ("toMillis", "$toMillis('2017-11-07T15:12:37.121Z')", Some(json!(1510067557121_u64))),
        // Higher-order functions
        ("map", "$map([1, 2], function($v){ $v * 2 })", Some(json!([2, 4]))),
        ("filter", "$filter([1, 2, 3], function($v){ $v > 1 })", Some(json!([2, 3]))),
        ("single", "$single([1, 2, 3], function($v){ $v = 2 })", Some(json!(2))),
        ("reduce", "$reduce([1, 2, 3], function($acc, $v){ $acc + $v })", Some(json!(6))),
        // Step Functions' additions
        ("partition", "$partition([1, 2, 3], 2)", Some(json!([[1, 2], [3]]))),
        ("range", "$range(0, 4, 2)", Some(json!([0, 2, 4]))),
        ("hash", "$hash('input data', 'MD5')", Some(json!("812f45842bc6d66ee14572ce20db8e86"))),
        ("uuid", "$length($uuid())", Some(json!(36))),
        ("parse", "$parse('{\"a\": 1}')", Some(json!({"a": 1}))),
    ];
    for (name, expr, expected) in cases {
        assert!(expr.contains(&format!("${name}(")), "the case of ${name} calls it: {expr}");
        let got = jsonata_output(expr, json!({}));
        match expected {
            Some(v) => assert_eq!(got, Ok(v), "${name}: {expr}"),
            None => {
                let e = got.unwrap_err();
                assert!(e.starts_with("refused: ") && e.contains(&format!("${name} is not supported")), "${name}: {e}");
            }
        }
    }
    // A name outside the library passes the parse and fails at run time, as in Step
    // Functions (the corpus records `$randomSeeded` doing so). A picture argument of a
    // date/time function is refused at parse.
    let e = jsonata_output("$nosuch(1)", json!({})).unwrap_err();
    assert!(e.starts_with("failed: ") && e.contains("T1006: Attempted to invoke a non-function"), "{e}");
    let e = jsonata_output("$fromMillis(0, '[Y]')", json!({})).unwrap_err();
    assert!(e.starts_with("refused: ") && e.contains("$fromMillis is supported with at most 1 argument"), "{e}");
    // A lambda bound in the expression, or passed as a parameter, may be called.
    assert_eq!(jsonata_output("($f := function($x){ $x + 1 }; $f(1))", json!({})), Ok(json!(2)));
    assert_eq!(jsonata_output("(function($g){ $g(2) })(function($x){ $x * 3 })", json!({})), Ok(json!(6)));
    let e = jsonata_output("$fromMillis(1e17)", json!({})).unwrap_err();
    assert!(e.contains("D1001"), "{e}");
    // $error and $assert fail the state with their message.
    let e = jsonata_output("$error('boom')", json!({})).unwrap_err();
    assert!(e.contains("D3137: boom"), "{e}");
    let e = jsonata_output("$assert(false, 'nope')", json!({})).unwrap_err();
    assert!(e.contains("D3141: nope"), "{e}");
}

/// A Choice state with one rule `{"Variable": "$.v", <op>: "$.operand", "Next": "Yes"}`
/// (or the rule given), its Default `No`: which branch the input takes.
fn choose(rule: Value, input: Value) -> Result<&'static str, String> {
    let mut rule = rule;
    rule["Next"] = json!("Yes");
    let def = json!({"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [rule], "Default": "No"},
        "Yes": {"Type": "Pass", "Result": "Yes", "End": true},
        "No": {"Type": "Pass", "Result": "No", "End": true}
    }});
    let m = StateMachine::parse(&def).map_err(|e| e.to_string())?;
    match run(&m, input) {
        Action::Succeeded { output } if output == json!("Yes") => Ok("Yes"),
        Action::Succeeded { output } if output == json!("No") => Ok("No"),
        Action::Failed { error, cause } => Err(format!("{}: {}", error.unwrap_or_default(), cause.unwrap_or_default())),
        other => panic!("unexpected action {other:?}"),
    }
}

/// Step Functions evaluates each Choice Rule to true or false; a comparison whose
/// values are not of the operator's type is false (the corpus records it for the
/// Variable's side, e.g. `BooleanEqualsPath` with a number), on the `*Path` operand's
/// side as on the Variable's, so the rule does not match and the Default is taken.
/// A `*Path` that selects nothing is a `States.Runtime` error.
#[test]
fn choice_path_operand_of_the_wrong_type_is_a_false_comparison() {
    let rule = |op: &str| json!({"Variable": "$.v", op: "$.operand"});
    for (op, v, operand) in [
        ("NumericLessThanPath", json!(5), json!("10")),
        ("NumericEqualsPath", json!(5), json!(true)),
        ("StringEqualsPath", json!("5"), json!(5)),
        ("StringLessThanPath", json!("a"), json!(null)),
        ("BooleanEqualsPath", json!(true), json!("true")),
        ("TimestampEqualsPath", json!("2024-01-01T00:00:00Z"), json!("yesterday")),
        ("TimestampLessThanPath", json!("2024-01-01T00:00:00Z"), json!(1_704_067_200)),
    ] {
        let input = json!({"v": v, "operand": operand});
        assert_eq!(choose(rule(op), input.clone()), Ok("No"), "{op} with {input}");
        // A plain false, not an error: `Not` of it holds.
        assert_eq!(choose(json!({"Not": rule(op)}), input.clone()), Ok("Yes"), "Not {op} with {input}");
    }
    // The same operators with operands of the right type compare as usual.
    assert_eq!(choose(rule("NumericLessThanPath"), json!({"v": 5, "operand": 10})), Ok("Yes"));
    assert_eq!(choose(rule("StringEqualsPath"), json!({"v": "5", "operand": "5"})), Ok("Yes"));
    // A *Path operand that selects nothing fails the state.
    assert_eq!(
        choose(rule("NumericLessThanPath"), json!({"v": 5})),
        Err("States.Runtime: An error occurred while executing the state 'C' (entered at the event id #2). Invalid path '$.operand': The choice state's condition path references an invalid value.".to_string())
    );
}
