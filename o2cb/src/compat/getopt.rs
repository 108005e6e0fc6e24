//! GNU `getopt_long` as ocfs2-tools uses it, so that `o2cb` accepts exactly the
//! same option spellings (abbreviated long options, `--opt=value`, clustered
//! short options, `--`, argument permutation) and prints the same diagnostics.
//!
//! ocfs2-tools parses its global options in "require order" mode (`+hvV`: stop
//! at the first word that is not an option) and each command's options in
//! GNU's default "permute" mode (options may follow the operands).

/// One long option: `--name` or `--name=value` / `--name value`.
#[derive(Debug, Clone, Copy)]
pub struct LongOpt {
    pub name: &'static str,
    pub has_arg: bool,
    /// What [`Item::Opt`] reports when this option is seen.
    pub key: char,
}

impl LongOpt {
    /// `--name`, which takes no value.
    pub const fn flag(name: &'static str, key: char) -> LongOpt {
        LongOpt {
            name,
            has_arg: false,
            key,
        }
    }

    /// `--name value` or `--name=value`.
    pub const fn with_arg(name: &'static str, key: char) -> LongOpt {
        LongOpt {
            name,
            has_arg: true,
            key,
        }
    }
}

/// Whether parsing stops at the first operand (`+` in the C optstring).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    RequireOrder,
    Permute,
}

/// What the parser found next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Opt {
        key: char,
        arg: Option<String>,
    },
    /// A diagnostic line (without newline) that getopt prints to stderr; the
    /// caller decides whether to keep going, as getopt itself does.
    Error(String),
}

/// An incremental parser over `argv` (whose first word is the program or
/// command name used in diagnostics).
pub struct Getopt<'a> {
    argv: &'a [String],
    shorts: &'a str,
    longs: &'a [LongOpt],
    order: Order,
    index: usize,
    /// Position inside a cluster of short options (`-hv`), 0 when none.
    short_pos: usize,
    operands: Vec<String>,
    done: bool,
}

impl<'a> Getopt<'a> {
    pub fn new(argv: &'a [String], shorts: &'a str, longs: &'a [LongOpt], order: Order) -> Self {
        Getopt {
            argv,
            shorts,
            longs,
            order,
            index: 1,
            short_pos: 0,
            operands: Vec::new(),
            done: false,
        }
    }

    fn prog(&self) -> &str {
        self.argv.first().map(String::as_str).unwrap_or("")
    }

    /// The operands, in order, once [`Iterator::next`] has returned `None`
    /// (permuted operands first, then everything after `--` or, in require
    /// order, everything from the first operand on).
    pub fn into_operands(mut self) -> Vec<String> {
        while self.next().is_some() {}
        self.operands
    }

    fn finish_rest(&mut self) {
        let rest = self.argv.get(self.index..).unwrap_or(&[]);
        self.operands.extend(rest.iter().cloned());
        self.index = self.argv.len();
        self.done = true;
    }

    fn next_short(&mut self) -> Item {
        let word = self.argv.get(self.index).map(String::as_str).unwrap_or("");
        let c = word
            .get(self.short_pos..)
            .and_then(|rest| rest.chars().next())
            .unwrap_or('?');
        self.short_pos += c.len_utf8();
        if self.short_pos >= word.len() {
            self.short_pos = 0;
            self.index += 1;
        }
        if c != ':' && self.shorts.contains(c) {
            Item::Opt { key: c, arg: None }
        } else {
            Item::Error(format!("{}: invalid option -- '{}'", self.prog(), c))
        }
    }

    fn next_long(&mut self, body: &str) -> Item {
        self.index += 1;
        let (name, value) = match body.find('=') {
            Some(eq) => (&body[..eq], Some(body[eq + 1..].to_string())),
            None => (body, None),
        };
        let found = match self.longs.iter().find(|o| o.name == name) {
            Some(exact) => *exact,
            None => {
                let candidates: Vec<&LongOpt> = self
                    .longs
                    .iter()
                    .filter(|o| o.name.starts_with(name))
                    .collect();
                match candidates.as_slice() {
                    [] => {
                        return Item::Error(format!(
                            "{}: unrecognized option '--{}'",
                            self.prog(),
                            body
                        ))
                    }
                    [only] => **only,
                    [first, rest @ ..]
                        if rest
                            .iter()
                            .all(|o| o.key == first.key && o.has_arg == first.has_arg) =>
                    {
                        **first
                    }
                    all => {
                        let names: Vec<String> =
                            all.iter().map(|o| format!(" '--{}'", o.name)).collect();
                        return Item::Error(format!(
                            "{}: option '--{}' is ambiguous; possibilities:{}",
                            self.prog(),
                            body,
                            names.concat()
                        ));
                    }
                }
            }
        };
        match (found.has_arg, value) {
            (false, Some(_)) => Item::Error(format!(
                "{}: option '--{}' doesn't allow an argument",
                self.prog(),
                found.name
            )),
            (false, None) => Item::Opt {
                key: found.key,
                arg: None,
            },
            (true, Some(v)) => Item::Opt {
                key: found.key,
                arg: Some(v),
            },
            (true, None) => match self.argv.get(self.index) {
                Some(v) => {
                    self.index += 1;
                    Item::Opt {
                        key: found.key,
                        arg: Some(v.clone()),
                    }
                }
                None => Item::Error(format!(
                    "{}: option '--{}' requires an argument",
                    self.prog(),
                    found.name
                )),
            },
        }
    }
}

impl Iterator for Getopt<'_> {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        if self.short_pos > 0 {
            return Some(self.next_short());
        }
        loop {
            if self.done {
                return None;
            }
            let Some(word) = self.argv.get(self.index) else {
                self.done = true;
                return None;
            };
            if word == "--" {
                self.index += 1;
                self.finish_rest();
                return None;
            }
            if let Some(body) = word.strip_prefix("--") {
                let body = body.to_string();
                return Some(self.next_long(&body));
            }
            if word.len() > 1 && word.starts_with('-') {
                self.short_pos = 1;
                return Some(self.next_short());
            }
            match self.order {
                Order::RequireOrder => {
                    self.finish_rest();
                    return None;
                }
                Order::Permute => {
                    self.operands.push(word.clone());
                    self.index += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONGS: &[LongOpt] = &[
        LongOpt::with_arg("config-file", 'c'),
        LongOpt::flag("verbose", 'v'),
        LongOpt::flag("version", 'V'),
    ];

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn require_order_stops_at_the_command() {
        let argv = words("o2cb -vV --conf=x list-nodes -v abc");
        let mut g = Getopt::new(&argv, "hvV", LONGS, Order::RequireOrder);
        let items: Vec<Item> = g.by_ref().collect();
        assert_eq!(
            items,
            vec![
                Item::Opt {
                    key: 'v',
                    arg: None
                },
                Item::Opt {
                    key: 'V',
                    arg: None
                },
                Item::Opt {
                    key: 'c',
                    arg: Some("x".into())
                },
            ]
        );
        assert_eq!(g.into_operands(), words("list-nodes -v abc"));
    }

    #[test]
    fn permute_collects_operands_around_options() {
        let longs = [LongOpt::with_arg("ip", 'i')];
        let argv = words("add-node c1 --ip 1.2.3.4 n1 -- --ip");
        let mut g = Getopt::new(&argv, "", &longs, Order::Permute);
        let items: Vec<Item> = g.by_ref().collect();
        assert_eq!(
            items,
            vec![Item::Opt {
                key: 'i',
                arg: Some("1.2.3.4".into())
            }]
        );
        assert_eq!(g.into_operands(), words("c1 n1 --ip"));
    }

    #[test]
    fn diagnostics_match_glibc_wording() {
        let argv = words("o2cb --ver --bogus=1 --verbose=2 -x --config-file");
        let g = Getopt::new(&argv, "hvV", LONGS, Order::RequireOrder);
        let errors: Vec<Item> = g.collect();
        assert_eq!(
            errors,
            vec![
                Item::Error(
                    "o2cb: option '--ver' is ambiguous; possibilities: '--verbose' '--version'"
                        .into()
                ),
                Item::Error("o2cb: unrecognized option '--bogus=1'".into()),
                Item::Error("o2cb: option '--verbose' doesn't allow an argument".into()),
                Item::Error("o2cb: invalid option -- 'x'".into()),
                Item::Error("o2cb: option '--config-file' requires an argument".into()),
            ]
        );
    }
}
