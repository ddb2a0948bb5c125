//! Random client scripts for the differential test: proptest picks a list of step
//! *choices* (what kind of traffic, with which numbers), and a small model of the
//! client's own session (in a transaction or not, aborted or not, which statement names
//! exist) turns each choice into the exact messages and how much of the answer to read.
//! The model only decides what to send and when a step's answer is complete; what the
//! answer must be comes from PostgreSQL itself, directly.

use bytes::Bytes;
use pgbouncer_protocol::FrontendMessage;
use proptest::prelude::*;

/// How the pooler is set up for a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    /// `session` or `transaction`.
    pub session: bool,
    /// default_pool_size (1 or 2).
    pub pool_size: u32,
    /// max_prepared_statements (transaction mode; 0 turns named statements off).
    pub prepared: u32,
}

/// One step of a client's script: bytes written (in pieces), and what ends its answer.
#[derive(Debug, Clone)]
pub struct Step {
    pub msgs: Vec<FrontendMessage>,
    /// Write boundaries as fractions of the encoded length (thousandths).
    pub cuts: Vec<u16>,
    pub expect: Expect,
}

/// When the answer to a step is complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// This many ReadyForQuery messages.
    Readies(usize),
    /// This many messages, or fewer if an ErrorResponse comes first (after Flush).
    Messages(usize),
    /// A query that sleeps: cancel it once it runs, then one ReadyForQuery.
    Cancel { marker: String },
    /// Write this many thousandths of the bytes, then close the connection.
    Abort(u16),
}

/// What kind of step to generate; the numbers are interpreted by the model.
#[derive(Debug, Clone)]
pub enum Choice {
    /// 1-3 simple queries.
    Simple(Vec<(u8, u8)>),
    /// An extended-protocol pipeline: statements (kind, n), an optional error at a
    /// position, optional Flushes, and one or more Syncs.
    Pipeline {
        stmts: Vec<(u8, u8)>,
        error_at: Option<u8>,
        flush: bool,
        query_after_error: bool,
        max_rows: u8,
    },
    /// Parse/Bind/Execute and Flush, answered without Sync, then a Sync-ended pipeline.
    FlushThenSync { n: u8, more: u8 },
    /// BEGIN (simple or extended with Flush), SAVEPOINT, or the end of a transaction.
    Tx(u8),
    /// A named statement: prepare, bind, describe or close (by index).
    Named { op: u8, idx: u8, n: u8 },
    /// COPY FROM STDIN: rows, whether it fails (bad row / CopyFail), extended protocol,
    /// whether the data is pipelined before CopyInResponse.
    CopyIn {
        rows: u8,
        fail: u8,
        extended: bool,
        size: u32,
    },
    /// COPY TO STDOUT.
    CopyOut { rows: u8 },
    /// A message of `size` bytes: a simple query or a Bind parameter.
    Big { size: u32, bind: bool },
    /// A sleeping query cancelled with a CancelRequest.
    Cancel,
    /// DISCARD ALL (session mode: statements and settings go).
    Discard,
}

/// A client's script before the model: choices, then maybe an abort at the end.
#[derive(Debug, Clone)]
pub struct Plan {
    pub choices: Vec<(Choice, Vec<u16>)>,
    pub abort: Option<(Choice, u16)>,
}

fn small() -> impl Strategy<Value = (u8, u8)> {
    (0u8..8, 0u8..6)
}

/// Sizes from 0 to 16 MiB, mostly small.
fn size() -> impl Strategy<Value = u32> {
    prop_oneof![
        8 => 0u32..2_000,
        4 => 2_000u32..70_000,
        2 => 70_000u32..1_100_000,
        1 => Just(16 << 20),
    ]
}

pub fn choice() -> impl Strategy<Value = Choice> {
    prop_oneof![
        6 => prop::collection::vec(small(), 1..4).prop_map(Choice::Simple),
        6 => (
            prop::collection::vec(small(), 1..4),
            prop::option::weighted(0.3, 0u8..4),
            any::<bool>(),
            prop::bool::weighted(0.2),
            0u8..4,
        )
            .prop_map(|(stmts, error_at, flush, query_after_error, max_rows)| Choice::Pipeline {
                stmts,
                error_at,
                flush,
                query_after_error,
                max_rows,
            }),
        2 => (0u8..6, 0u8..3).prop_map(|(n, more)| Choice::FlushThenSync { n, more }),
        4 => (0u8..10).prop_map(Choice::Tx),
        4 => (0u8..4, 0u8..4, 0u8..6).prop_map(|(op, idx, n)| Choice::Named { op, idx, n }),
        2 => (0u8..5, 0u8..6, any::<bool>(), prop_oneof![4 => 0u32..200, 1 => 0u32..300_000])
            .prop_map(|(rows, fail, extended, size)| Choice::CopyIn { rows, fail, extended, size }),
        1 => (0u8..6).prop_map(|rows| Choice::CopyOut { rows }),
        1 => (size(), any::<bool>()).prop_map(|(size, bind)| Choice::Big { size, bind }),
        1 => Just(Choice::Cancel),
        1 => Just(Choice::Discard),
    ]
}

pub fn cuts() -> impl Strategy<Value = Vec<u16>> {
    prop::collection::vec(0u16..1000, 0..3)
}

pub fn plan(steps: usize) -> impl Strategy<Value = Plan> {
    (
        prop::collection::vec((choice(), cuts()), 1..steps),
        prop::option::weighted(0.25, (choice(), 1u16..1000)),
    )
        .prop_map(|(choices, abort)| Plan { choices, abort })
}

/// The client's session as far as what to send next depends on it.
#[derive(Debug, Default)]
struct Model {
    in_tx: bool,
    aborted: bool,
    savepoints: u8,
    /// Statement names that exist, with the number their query adds.
    named: Vec<(String, u8)>,
    next_name: u32,
}

/// Turns a plan into steps for client `me` (its table is `diff_c<me>`).
pub fn script(plan: &Plan, me: usize, setup: Setup) -> Vec<Step> {
    let mut m = Model::default();
    let mut out = Vec::new();
    let mut k = 0u32;
    for (c, cuts) in &plan.choices {
        for mut step in m.steps(c, me, setup, &mut k) {
            step.cuts = cuts.clone();
            out.push(step);
        }
    }
    match &plan.abort {
        Some((c, at)) => {
            if let Some(mut step) = m.steps(c, me, setup, &mut k).into_iter().next() {
                step.expect = Expect::Abort(*at);
                step.cuts.clear();
                out.push(step);
            }
        }
        None => {
            if m.in_tx {
                out.push(simple(vec![q("commit")]));
            }
        }
    }
    out
}

fn q(sql: &str) -> FrontendMessage {
    FrontendMessage::Query {
        query: Bytes::copy_from_slice(sql.as_bytes()),
    }
}

fn parse(name: &str, sql: &str) -> FrontendMessage {
    FrontendMessage::Parse {
        name: Bytes::copy_from_slice(name.as_bytes()),
        query: Bytes::copy_from_slice(sql.as_bytes()),
        param_types: vec![],
    }
}

fn bind(stmt: &str, params: Vec<Option<Vec<u8>>>) -> FrontendMessage {
    FrontendMessage::Bind {
        portal: Bytes::new(),
        statement: Bytes::copy_from_slice(stmt.as_bytes()),
        param_formats: vec![],
        params: params.into_iter().map(|p| p.map(Bytes::from)).collect(),
        result_formats: vec![],
    }
}

fn exec(max_rows: i32) -> FrontendMessage {
    FrontendMessage::Execute {
        portal: Bytes::new(),
        max_rows,
    }
}

fn simple(msgs: Vec<FrontendMessage>) -> Step {
    let n = msgs.len();
    Step {
        msgs,
        cuts: vec![],
        expect: Expect::Readies(n),
    }
}

/// A statement that runs without error, with its number of rows.
fn good_sql(kind: u8, n: u8, me: usize, k: u32) -> (String, usize) {
    match kind % 5 {
        0 => (format!("select 'c{me}-{k}'"), 1),
        1 => (
            format!("select 'c{me}-{k}-' || g from generate_series(1, {n}) g"),
            n as usize,
        ),
        2 => (format!("insert into diff_c{me} values ({k}, 'c{me}')"), 0),
        3 => (format!("select count(*), 'c{me}' from diff_c{me}"), 1),
        _ => (format!("select {k} + {n}, repeat('c{me}', {n})"), 1),
    }
}

impl Model {
    fn steps(&mut self, c: &Choice, me: usize, setup: Setup, k: &mut u32) -> Vec<Step> {
        *k += 1;
        let k = *k;
        let named_ok = setup.session || setup.prepared > 0;
        match c {
            Choice::Simple(qs) => {
                let msgs = qs
                    .iter()
                    .map(|&(kind, n)| {
                        if kind == 7 {
                            self.error();
                            q("select 1/0")
                        } else if kind == 6 {
                            self.error();
                            q(&format!("selec 'c{me}'"))
                        } else {
                            q(&good_sql(kind, n, me, k).0)
                        }
                    })
                    .collect();
                vec![simple(msgs)]
            }
            Choice::Pipeline {
                stmts,
                error_at,
                flush,
                query_after_error,
                max_rows,
            } => vec![self.pipeline(
                stmts,
                *error_at,
                *flush,
                *query_after_error,
                *max_rows,
                me,
                k,
            )],
            Choice::FlushThenSync { n, more } => {
                let (sql, rows) = good_sql(*n, *n, me, k);
                let first = Step {
                    msgs: vec![
                        parse("", &sql),
                        bind("", vec![]),
                        exec(0),
                        FrontendMessage::Flush,
                    ],
                    cuts: vec![],
                    // After an error in a transaction, the Parse fails and the rest is
                    // skipped: the reader stops at the ErrorResponse.
                    expect: Expect::Messages(if self.aborted { 1 } else { 3 + rows }),
                };
                let rest: Vec<(u8, u8)> = (0..*more).map(|i| (i, *n)).collect();
                let second = self.pipeline(&rest, None, false, false, 0, me, k + 1000);
                vec![first, second]
            }
            Choice::Tx(t) => self.tx(*t, me, k),
            Choice::Named { op, idx, n } if named_ok && !self.aborted => {
                self.named(*op, *idx, *n, me)
            }
            Choice::Named { .. } => vec![simple(vec![q(&good_sql(0, 0, me, k).0)])],
            Choice::CopyIn {
                rows,
                fail,
                extended,
                size,
            } => vec![self.copy_in(*rows, *fail, *extended, *size, me, k)],
            Choice::CopyOut { rows } => vec![simple(vec![q(&format!(
                "copy (select 'c{me}-' || g from generate_series(1, {rows}) g) to stdout"
            ))])],
            Choice::Big { size, bind: false } => {
                let s = *size as usize;
                vec![simple(vec![q(&format!(
                    "select length('{}'), 'c{me}'",
                    "b".repeat(s)
                ))])]
            }
            Choice::Big { size, bind: true } => {
                let p = vec![b'p'; *size as usize];
                let step = Step {
                    msgs: vec![
                        parse("", &format!("select length($1), 'c{me}-{k}'")),
                        bind("", vec![Some(p)]),
                        exec(0),
                        FrontendMessage::Sync,
                    ],
                    cuts: vec![],
                    expect: Expect::Readies(1),
                };
                vec![step]
            }
            Choice::Cancel if !self.aborted => {
                let marker = format!("cancel-c{me}-{k}");
                if self.in_tx {
                    self.aborted = true;
                }
                vec![Step {
                    msgs: vec![q(&format!("select pg_sleep(60), '{marker}'"))],
                    cuts: vec![],
                    expect: Expect::Cancel { marker },
                }]
            }
            Choice::Cancel => vec![simple(vec![q("select 1")])],
            Choice::Discard => {
                if self.in_tx {
                    // DISCARD ALL cannot run inside a transaction block.
                    self.error();
                } else if setup.session || setup.prepared > 0 {
                    self.named.clear();
                }
                vec![simple(vec![q("discard all")])]
            }
        }
    }

    /// An error inside an explicit transaction aborts it.
    fn error(&mut self) {
        if self.in_tx {
            self.aborted = true;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn pipeline(
        &mut self,
        stmts: &[(u8, u8)],
        error_at: Option<u8>,
        flush: bool,
        query_after_error: bool,
        max_rows: u8,
        me: usize,
        k: u32,
    ) -> Step {
        let mut msgs = Vec::new();
        let mut readies = 0;
        for (i, &(kind, n)) in stmts.iter().enumerate() {
            let erring = error_at.is_some_and(|e| e as usize == i);
            if erring {
                // A Parse error (unknown column) or an execution error (division).
                if n % 2 == 0 {
                    msgs.push(parse("", &format!("select nosuchcolumn, 'c{me}'")));
                } else {
                    msgs.push(parse("", "select 1/0"));
                }
                msgs.push(bind("", vec![]));
                msgs.push(exec(0));
                self.error();
                if query_after_error {
                    // Ignored by the server until the Sync.
                    msgs.push(q(&format!("select 'c{me}-ignored'")));
                }
            } else {
                let (sql, _) = good_sql(kind, n, me, k + i as u32);
                msgs.push(parse("", &sql));
                msgs.push(bind("", vec![]));
                if kind % 3 == 0 {
                    msgs.push(FrontendMessage::Describe {
                        kind: b'P',
                        name: Bytes::new(),
                    });
                }
                if max_rows > 0 && kind % 5 == 1 {
                    msgs.push(exec(i32::from(max_rows)));
                    msgs.push(exec(0));
                } else {
                    msgs.push(exec(0));
                }
            }
            if flush {
                msgs.push(FrontendMessage::Flush);
            }
            if i + 1 < stmts.len() && kind % 4 == 3 {
                msgs.push(FrontendMessage::Sync);
                readies += 1;
            }
        }
        msgs.push(FrontendMessage::Sync);
        readies += 1;
        // Outside a transaction block each Sync ends the implicit transaction.
        if !self.in_tx {
            self.aborted = false;
        }
        Step {
            msgs,
            cuts: vec![],
            expect: Expect::Readies(readies),
        }
    }

    fn tx(&mut self, t: u8, me: usize, k: u32) -> Vec<Step> {
        if !self.in_tx {
            self.in_tx = true;
            self.aborted = false;
            self.savepoints = 0;
            if t.is_multiple_of(3) {
                // What pipelining drivers send: BEGIN in extended protocol with Flush.
                return vec![Step {
                    msgs: vec![
                        parse("", "begin"),
                        bind("", vec![]),
                        exec(0),
                        FrontendMessage::Flush,
                    ],
                    cuts: vec![],
                    expect: Expect::Messages(3),
                }];
            }
            return vec![simple(vec![q("begin")])];
        }
        match t % 5 {
            0 | 1 => {
                let end = if t.is_multiple_of(2) {
                    "commit"
                } else {
                    "rollback"
                };
                self.in_tx = false;
                self.aborted = false;
                vec![simple(vec![q(end)])]
            }
            2 if !self.aborted => {
                self.savepoints += 1;
                vec![simple(vec![q(&format!("savepoint s{}", self.savepoints))])]
            }
            3 if self.savepoints > 0 => {
                self.aborted = false;
                vec![simple(vec![q(&format!(
                    "rollback to savepoint s{}",
                    self.savepoints
                ))])]
            }
            _ => vec![simple(vec![q(&format!("select 'c{me}-{k}-in-tx'"))])],
        }
    }

    fn named(&mut self, op: u8, idx: u8, n: u8, me: usize) -> Vec<Step> {
        if op == 0 || self.named.is_empty() {
            self.next_name += 1;
            let name = format!("s{me}_{}", self.next_name);
            let step = Step {
                msgs: vec![
                    parse(&name, &format!("select $1::int + {n}, 'c{me}'")),
                    FrontendMessage::Sync,
                ],
                cuts: vec![],
                expect: Expect::Readies(1),
            };
            self.named.push((name, n));
            return vec![step];
        }
        let i = idx as usize % self.named.len();
        let name = self.named[i].0.clone();
        let msgs = match op {
            1 => vec![
                bind(&name, vec![Some(format!("{}", idx).into_bytes())]),
                exec(0),
                FrontendMessage::Sync,
            ],
            2 => vec![
                FrontendMessage::Describe {
                    kind: b'S',
                    name: Bytes::copy_from_slice(name.as_bytes()),
                },
                FrontendMessage::Sync,
            ],
            _ => {
                self.named.remove(i);
                vec![
                    FrontendMessage::Close {
                        kind: b'S',
                        name: Bytes::copy_from_slice(name.as_bytes()),
                    },
                    FrontendMessage::Sync,
                ]
            }
        };
        vec![Step {
            msgs,
            cuts: vec![],
            expect: Expect::Readies(1),
        }]
    }

    fn copy_in(
        &mut self,
        rows: u8,
        fail: u8,
        extended: bool,
        size: u32,
        me: usize,
        k: u32,
    ) -> Step {
        let sql = format!("copy diff_c{me} from stdin");
        let mut msgs = Vec::new();
        let mut readies = 1;
        if extended {
            msgs.extend([
                parse("", &sql),
                bind("", vec![]),
                exec(0),
                FrontendMessage::Sync,
            ]);
            if self.aborted {
                // The Parse fails; the Sync ends the skip, the rest is outside COPY.
                readies = 2;
            }
        } else {
            msgs.push(q(&sql));
        }
        for r in 0..rows {
            let text = "t".repeat(size as usize);
            msgs.push(FrontendMessage::CopyData(Bytes::from(
                format!("{}\t{text}\n", k * 100 + u32::from(r)).into_bytes(),
            )));
        }
        match fail {
            0 => msgs.push(FrontendMessage::CopyData(Bytes::from_static(
                b"not-a-number\tx\n",
            ))),
            1 => msgs.push(FrontendMessage::CopyFail {
                message: Bytes::from_static(b"client gave up"),
            }),
            _ => {}
        }
        if fail != 1 {
            msgs.push(FrontendMessage::CopyDone);
        }
        if extended {
            msgs.push(FrontendMessage::Sync);
        }
        if fail <= 1 || self.aborted {
            self.error();
        }
        if !self.in_tx {
            self.aborted = false;
        }
        Step {
            msgs,
            cuts: vec![],
            expect: Expect::Readies(readies),
        }
    }
}
