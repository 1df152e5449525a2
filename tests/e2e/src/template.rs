//! Reads `infra/template.yaml` (AWS SAM): the DynamoDB tables, SQS queues, Secrets Manager
//! secrets and functions it defines, so the local stack never restates them.
//!
//! CloudFormation's short-form tags (`!Ref`, `!GetAtt`, `!Sub`, `!If`, ...) arrive from
//! serde_yaml as tagged values; [`Expr`] reads them and their long forms (`Ref:`, `Fn::GetAtt:`,
//! `Fn::Sub:`); [`Expr::resolve`] evaluates the ones a local stack can know.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, anyhow, bail};
use serde_yaml::Value;

/// A CloudFormation value: a literal or an intrinsic function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Literal(String),
    Ref(String),
    GetAtt(String, String),
    /// `Fn::Sub` text with its optional variable map.
    Sub(String, BTreeMap<String, Expr>),
    /// Any other intrinsic (`Fn::If`, `Fn::Join`, ...), by name; never resolved locally.
    Other(String),
}

/// What a local stack knows about the names in a template.
pub trait Resolve {
    /// The value of `!Ref name` (a resource's physical id, a parameter, a pseudo parameter).
    fn reference(&self, name: &str) -> Option<String>;
    /// The value of `!GetAtt resource.attribute`.
    fn attribute(&self, resource: &str, attribute: &str) -> Option<String>;
}

impl Expr {
    pub fn from_value(value: &Value) -> Expr {
        match value {
            Value::String(s) => Expr::Literal(s.clone()),
            Value::Number(n) => Expr::Literal(n.to_string()),
            Value::Bool(b) => Expr::Literal(b.to_string()),
            Value::Tagged(tagged) => {
                let tag = tagged.tag.to_string();
                intrinsic(tag.trim_start_matches('!'), &tagged.value)
            }
            Value::Mapping(map) if map.len() == 1 => {
                let (key, inner) = map.iter().next().expect("one entry");
                match key.as_str() {
                    Some("Ref") => intrinsic("Ref", inner),
                    Some(name) if name.starts_with("Fn::") => intrinsic(&name[4..], inner),
                    _ => Expr::Other("Mapping".into()),
                }
            }
            other => Expr::Other(format!("{other:?}")),
        }
    }

    /// The literal text, if this is a literal.
    pub fn literal(&self) -> Option<&str> {
        match self {
            Expr::Literal(s) => Some(s),
            _ => None,
        }
    }

    /// Evaluates the expression, or `None` if it names something `ctx` does not know.
    pub fn resolve(&self, ctx: &dyn Resolve) -> Option<String> {
        match self {
            Expr::Literal(s) => Some(s.clone()),
            Expr::Ref(name) => ctx.reference(name),
            Expr::GetAtt(resource, attribute) => ctx.attribute(resource, attribute),
            Expr::Sub(text, vars) => substitute(text, vars, ctx),
            Expr::Other(_) => None,
        }
    }
}

fn intrinsic(name: &str, arg: &Value) -> Expr {
    match name {
        "Ref" => arg
            .as_str()
            .map_or_else(|| Expr::Other("Ref".into()), |s| Expr::Ref(s.to_owned())),
        "GetAtt" => match arg {
            Value::String(s) => match s.split_once('.') {
                Some((resource, attribute)) => Expr::GetAtt(resource.into(), attribute.into()),
                None => Expr::Other("GetAtt".into()),
            },
            Value::Sequence(parts) if parts.len() == 2 => {
                match (parts[0].as_str(), parts[1].as_str()) {
                    (Some(resource), Some(attribute)) => {
                        Expr::GetAtt(resource.into(), attribute.into())
                    }
                    _ => Expr::Other("GetAtt".into()),
                }
            }
            _ => Expr::Other("GetAtt".into()),
        },
        "Sub" => match arg {
            Value::String(s) => Expr::Sub(s.clone(), BTreeMap::new()),
            Value::Sequence(parts) if parts.len() == 2 => {
                let vars = parts[1]
                    .as_mapping()
                    .map(|m| {
                        m.iter()
                            .filter_map(|(k, v)| {
                                Some((k.as_str()?.to_owned(), Expr::from_value(v)))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                match parts[0].as_str() {
                    Some(text) => Expr::Sub(text.to_owned(), vars),
                    None => Expr::Other("Sub".into()),
                }
            }
            _ => Expr::Other("Sub".into()),
        },
        other => Expr::Other(other.to_owned()),
    }
}

/// Evaluates `Fn::Sub` text: `${Name}`, `${Resource.Attribute}`, `${!Literal}`.
fn substitute(text: &str, vars: &BTreeMap<String, Expr>, ctx: &dyn Resolve) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}')?;
        let name = &after[..end];
        if let Some(literal) = name.strip_prefix('!') {
            out.push_str("${");
            out.push_str(literal);
            out.push('}');
        } else if let Some(expr) = vars.get(name) {
            out.push_str(&expr.resolve(ctx)?);
        } else if let Some((resource, attribute)) = name.split_once('.') {
            out.push_str(&ctx.attribute(resource, attribute)?);
        } else {
            out.push_str(&ctx.reference(name)?);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// A DynamoDB table (`AWS::DynamoDB::Table`).
#[derive(Debug, Clone)]
pub struct TableDef {
    pub logical_id: String,
    /// `(name, type)` pairs, type `S`, `N` or `B`.
    pub attribute_definitions: Vec<(String, String)>,
    /// `(attribute, HASH|RANGE)` pairs.
    pub key_schema: Vec<(String, String)>,
    pub global_secondary_indexes: Vec<IndexDef>,
    pub local_secondary_indexes: Vec<IndexDef>,
    /// The TTL attribute, when `TimeToLiveSpecification` is enabled.
    pub ttl_attribute: Option<String>,
    pub billing_mode: String,
}

/// A secondary index of a [`TableDef`].
#[derive(Debug, Clone)]
pub struct IndexDef {
    pub name: String,
    pub key_schema: Vec<(String, String)>,
    /// `ALL`, `KEYS_ONLY` or `INCLUDE`.
    pub projection_type: String,
    pub non_key_attributes: Vec<String>,
}

/// An SQS queue (`AWS::SQS::Queue`).
#[derive(Debug, Clone)]
pub struct QueueDef {
    pub logical_id: String,
    /// SQS attributes with literal values (`VisibilityTimeout`, `MessageRetentionPeriod`, ...),
    /// named as the SQS API names them.
    pub attributes: BTreeMap<String, String>,
    pub dead_letter: Option<DeadLetterDef>,
    pub fifo: bool,
}

/// The `RedrivePolicy` of a [`QueueDef`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterDef {
    /// Logical id of the dead-letter queue.
    pub target: String,
    pub max_receive_count: u32,
}

/// A Secrets Manager secret (`AWS::SecretsManager::Secret`).
#[derive(Debug, Clone)]
pub struct SecretDef {
    pub logical_id: String,
    pub name: Option<Expr>,
    pub description: Option<String>,
    pub initial: SecretInit,
}

/// How CloudFormation creates a secret's first value.
#[derive(Debug, Clone)]
pub enum SecretInit {
    Literal(String),
    /// `GenerateSecretString`: a random password, optionally as `key` inside a JSON template.
    Generate {
        json_template: Option<String>,
        key: Option<String>,
        length: usize,
    },
    Empty,
}

/// A function (`AWS::Serverless::Function`) with the settings that apply locally.
#[derive(Debug, Clone)]
pub struct FunctionDef {
    pub logical_id: String,
    /// The cargo binary (`Metadata.BuildProperties.Binary`).
    pub binary: String,
    pub timeout_seconds: u64,
    pub memory_mb: u64,
    /// Global variables overlaid with the function's own.
    pub environment: BTreeMap<String, Expr>,
    pub http_routes: Vec<HttpRoute>,
    pub sqs_sources: Vec<SqsSourceDef>,
    /// The `Input` of each `ScheduleV2`/`Schedule` event: what the scheduler delivers.
    pub schedule_inputs: Vec<String>,
}

/// An `SQS` event of a function (its event source mapping).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsSourceDef {
    /// Logical id of the queue.
    pub queue: String,
    pub batch_size: u32,
    /// `FunctionResponseTypes: [ReportBatchItemFailures]`.
    pub report_batch_item_failures: bool,
}

/// An `HttpApi` event of a function: `GET /oauth/callback`, `ANY /api/{proxy+}`, ...
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRoute {
    pub method: String,
    pub path: String,
}

/// The parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    pub tables: Vec<TableDef>,
    pub queues: Vec<QueueDef>,
    pub secrets: Vec<SecretDef>,
    pub functions: Vec<FunctionDef>,
    /// `Parameters` with their `Default`, if any.
    pub parameters: BTreeMap<String, Option<String>>,
}

impl Template {
    /// Reads `infra/template.yaml`.
    pub fn load() -> anyhow::Result<Template> {
        Self::load_from(&crate::paths::template_path())
    }

    pub fn load_from(path: &Path) -> anyhow::Result<Template> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("parsing {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Template> {
        let doc: Value = serde_yaml::from_str(text)?;
        let resources = doc
            .get("Resources")
            .and_then(Value::as_mapping)
            .ok_or_else(|| anyhow!("no Resources"))?;
        let globals = doc.get("Globals").and_then(|g| g.get("Function"));
        let mut template = Template {
            tables: vec![],
            queues: vec![],
            secrets: vec![],
            functions: vec![],
            parameters: BTreeMap::new(),
        };
        if let Some(params) = doc.get("Parameters").and_then(Value::as_mapping) {
            for (name, def) in params {
                let name = name.as_str().unwrap_or_default().to_owned();
                let default = def
                    .get("Default")
                    .and_then(|d| Expr::from_value(d).literal().map(str::to_owned));
                template.parameters.insert(name, default);
            }
        }
        for (id, resource) in resources {
            let id = id
                .as_str()
                .ok_or_else(|| anyhow!("non-string resource id"))?
                .to_owned();
            let props = resource.get("Properties").cloned().unwrap_or(Value::Null);
            let mut parse = || -> anyhow::Result<()> {
                match resource.get("Type").and_then(Value::as_str) {
                    Some("AWS::DynamoDB::Table") => template.tables.push(parse_table(&id, &props)?),
                    Some("AWS::SQS::Queue") => template.queues.push(parse_queue(&id, &props)?),
                    Some("AWS::SecretsManager::Secret") => {
                        template.secrets.push(parse_secret(&id, &props))
                    }
                    Some("AWS::Serverless::Function") => template
                        .functions
                        .push(parse_function(&id, resource, &props, globals)?),
                    _ => {}
                }
                Ok(())
            };
            parse().with_context(|| format!("resource {id}"))?;
        }
        Ok(template)
    }

    pub fn table(&self, logical_id: &str) -> Option<&TableDef> {
        self.tables.iter().find(|t| t.logical_id == logical_id)
    }

    pub fn queue(&self, logical_id: &str) -> Option<&QueueDef> {
        self.queues.iter().find(|q| q.logical_id == logical_id)
    }

    pub fn secret(&self, logical_id: &str) -> Option<&SecretDef> {
        self.secrets.iter().find(|s| s.logical_id == logical_id)
    }

    /// The function built from cargo binary `binary`.
    pub fn function_by_binary(&self, binary: &str) -> Option<&FunctionDef> {
        self.functions.iter().find(|f| f.binary == binary)
    }
}

fn str_field(value: &Value, key: &str) -> anyhow::Result<String> {
    value
        .get(key)
        .map(Expr::from_value)
        .and_then(|e| e.literal().map(str::to_owned))
        .ok_or_else(|| anyhow!("{key} is missing or not a literal"))
}

fn pairs(
    value: Option<&Value>,
    first: &str,
    second: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let Some(items) = value.and_then(Value::as_sequence) else {
        return Ok(vec![]);
    };
    items
        .iter()
        .map(|item| Ok((str_field(item, first)?, str_field(item, second)?)))
        .collect()
}

fn parse_index(value: &Value) -> anyhow::Result<IndexDef> {
    let projection = value.get("Projection");
    Ok(IndexDef {
        name: str_field(value, "IndexName")?,
        key_schema: pairs(value.get("KeySchema"), "AttributeName", "KeyType")?,
        projection_type: projection
            .and_then(|p| p.get("ProjectionType"))
            .and_then(Value::as_str)
            .unwrap_or("ALL")
            .to_owned(),
        non_key_attributes: projection
            .and_then(|p| p.get("NonKeyAttributes"))
            .and_then(Value::as_sequence)
            .map(|s| {
                s.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

fn parse_table(id: &str, props: &Value) -> anyhow::Result<TableDef> {
    let indexes = |key: &str| -> anyhow::Result<Vec<IndexDef>> {
        props
            .get(key)
            .and_then(Value::as_sequence)
            .map_or(Ok(vec![]), |s| s.iter().map(parse_index).collect())
    };
    let ttl = props.get("TimeToLiveSpecification");
    let ttl_enabled = ttl
        .and_then(|t| t.get("Enabled"))
        .is_some_and(|e| Expr::from_value(e).literal() == Some("true"));
    Ok(TableDef {
        logical_id: id.to_owned(),
        attribute_definitions: pairs(
            props.get("AttributeDefinitions"),
            "AttributeName",
            "AttributeType",
        )?,
        key_schema: pairs(props.get("KeySchema"), "AttributeName", "KeyType")?,
        global_secondary_indexes: indexes("GlobalSecondaryIndexes")?,
        local_secondary_indexes: indexes("LocalSecondaryIndexes")?,
        ttl_attribute: if ttl_enabled {
            ttl.and_then(|t| t.get("AttributeName"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        } else {
            None
        },
        billing_mode: props
            .get("BillingMode")
            .and_then(Value::as_str)
            .unwrap_or("PROVISIONED")
            .to_owned(),
    })
}

/// CloudFormation queue properties that are SQS attributes of the same name.
const QUEUE_ATTRIBUTES: &[&str] = &[
    "VisibilityTimeout",
    "MessageRetentionPeriod",
    "DelaySeconds",
    "MaximumMessageSize",
    "ReceiveMessageWaitTimeSeconds",
    "SqsManagedSseEnabled",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
];

fn parse_queue(id: &str, props: &Value) -> anyhow::Result<QueueDef> {
    let mut attributes = BTreeMap::new();
    for name in QUEUE_ATTRIBUTES {
        if let Some(value) = props.get(*name) {
            match Expr::from_value(value) {
                Expr::Literal(v) => {
                    attributes.insert((*name).to_owned(), v);
                }
                other => bail!("{name} must be a literal to be provisioned locally, got {other:?}"),
            }
        }
    }
    let dead_letter = match props.get("RedrivePolicy") {
        None => None,
        Some(policy) => {
            let target = match policy.get("deadLetterTargetArn").map(Expr::from_value) {
                Some(Expr::GetAtt(resource, attribute)) if attribute == "Arn" => resource,
                other => bail!(
                    "RedrivePolicy.deadLetterTargetArn must be !GetAtt <Queue>.Arn, got {other:?}"
                ),
            };
            let count = policy
                .get("maxReceiveCount")
                .map(Expr::from_value)
                .and_then(|e| e.literal().and_then(|v| v.parse().ok()))
                .ok_or_else(|| anyhow!("RedrivePolicy.maxReceiveCount must be a number"))?;
            Some(DeadLetterDef {
                target,
                max_receive_count: count,
            })
        }
    };
    let fifo = props
        .get("FifoQueue")
        .is_some_and(|v| Expr::from_value(v).literal() == Some("true"));
    Ok(QueueDef {
        logical_id: id.to_owned(),
        attributes,
        dead_letter,
        fifo,
    })
}

fn parse_secret(id: &str, props: &Value) -> SecretDef {
    let initial = if let Some(s) = props.get("SecretString").and_then(Value::as_str) {
        SecretInit::Literal(s.to_owned())
    } else if let Some(generate) = props.get("GenerateSecretString") {
        SecretInit::Generate {
            json_template: generate
                .get("SecretStringTemplate")
                .and_then(Value::as_str)
                .map(str::to_owned),
            key: generate
                .get("GenerateStringKey")
                .and_then(Value::as_str)
                .map(str::to_owned),
            length: generate
                .get("PasswordLength")
                .and_then(Value::as_u64)
                .unwrap_or(32) as usize,
        }
    } else {
        SecretInit::Empty
    };
    SecretDef {
        logical_id: id.to_owned(),
        name: props.get("Name").map(Expr::from_value),
        description: props
            .get("Description")
            .and_then(Value::as_str)
            .map(str::to_owned),
        initial,
    }
}

fn env_vars(value: Option<&Value>) -> BTreeMap<String, Expr> {
    value
        .and_then(|v| v.get("Environment"))
        .and_then(|e| e.get("Variables"))
        .and_then(Value::as_mapping)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), Expr::from_value(v))))
                .collect()
        })
        .unwrap_or_default()
}

fn number(props: &Value, globals: Option<&Value>, key: &str, default: u64) -> u64 {
    props
        .get(key)
        .or_else(|| globals.and_then(|g| g.get(key)))
        .and_then(|v| Expr::from_value(v).literal().and_then(|s| s.parse().ok()))
        .unwrap_or(default)
}

fn parse_function(
    id: &str,
    resource: &Value,
    props: &Value,
    globals: Option<&Value>,
) -> anyhow::Result<FunctionDef> {
    let binary = resource
        .get("Metadata")
        .and_then(|m| m.get("BuildProperties"))
        .and_then(|b| b.get("Binary"))
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("Metadata.BuildProperties.Binary is missing"))?
        .to_owned();
    let mut environment = env_vars(globals);
    environment.extend(env_vars(Some(props)));
    let mut http_routes = Vec::new();
    let mut sqs_sources = Vec::new();
    let mut schedule_inputs = Vec::new();
    if let Some(events) = props.get("Events").and_then(Value::as_mapping) {
        for event in events.values() {
            let p = event.get("Properties");
            let field = |key: &str| p.and_then(|p| p.get(key));
            match event.get("Type").and_then(Value::as_str) {
                Some("HttpApi") => http_routes.push(HttpRoute {
                    method: field("Method")
                        .and_then(Value::as_str)
                        .unwrap_or("ANY")
                        .to_uppercase(),
                    path: field("Path")
                        .and_then(Value::as_str)
                        .unwrap_or("/")
                        .to_owned(),
                }),
                Some("SQS") => {
                    let queue = match field("Queue").map(Expr::from_value) {
                        Some(Expr::GetAtt(queue, attribute)) if attribute == "Arn" => queue,
                        other => {
                            bail!("SQS event Queue must be !GetAtt <Queue>.Arn, got {other:?}")
                        }
                    };
                    let batch_size = field("BatchSize")
                        .and_then(|v| Expr::from_value(v).literal().and_then(|s| s.parse().ok()))
                        .unwrap_or(10);
                    let report_batch_item_failures = field("FunctionResponseTypes")
                        .and_then(Value::as_sequence)
                        .is_some_and(|types| {
                            types
                                .iter()
                                .any(|t| t.as_str() == Some("ReportBatchItemFailures"))
                        });
                    sqs_sources.push(SqsSourceDef {
                        queue,
                        batch_size,
                        report_batch_item_failures,
                    });
                }
                Some("ScheduleV2" | "Schedule") => {
                    schedule_inputs.push(
                        field("Input")
                            .and_then(Value::as_str)
                            .unwrap_or("{}")
                            .to_owned(),
                    );
                }
                _ => {}
            }
        }
    }
    Ok(FunctionDef {
        logical_id: id.to_owned(),
        binary,
        timeout_seconds: number(props, globals, "Timeout", 3),
        memory_mb: number(props, globals, "MemorySize", 128),
        environment,
        http_routes,
        sqs_sources,
        schedule_inputs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Ctx;
    impl Resolve for Ctx {
        fn reference(&self, name: &str) -> Option<String> {
            match name {
                "AWS::StackName" => Some("t1".into()),
                "Table" => Some("t1-Table".into()),
                _ => None,
            }
        }
        fn attribute(&self, resource: &str, attribute: &str) -> Option<String> {
            (resource == "Table" && attribute == "Arn").then(|| "arn:table".into())
        }
    }

    #[test]
    fn short_and_long_forms_read_alike() {
        let doc: Value = serde_yaml::from_str(
            "a: !Ref Table\nb: {Ref: Table}\nc: !GetAtt Table.Arn\nd: {'Fn::GetAtt': [Table, Arn]}\n\
             e: !Sub '${AWS::StackName}/x/${Table.Arn}/${!Keep}'\nf: !Sub ['${V}-1', {V: !Ref Table}]\ng: !If [C, a, b]\n",
        )
        .unwrap();
        let get = |k: &str| Expr::from_value(doc.get(k).unwrap());
        assert_eq!(get("a"), Expr::Ref("Table".into()));
        assert_eq!(get("a"), get("b"));
        assert_eq!(get("c"), Expr::GetAtt("Table".into(), "Arn".into()));
        assert_eq!(get("c"), get("d"));
        assert_eq!(
            get("e").resolve(&Ctx).as_deref(),
            Some("t1/x/arn:table/${Keep}")
        );
        assert_eq!(get("f").resolve(&Ctx).as_deref(), Some("t1-Table-1"));
        assert_eq!(get("g"), Expr::Other("If".into()));
        assert_eq!(Expr::Ref("Nope".into()).resolve(&Ctx), None);
    }

    #[test]
    fn the_project_template_defines_the_expected_resources() {
        let t = Template::load().unwrap();
        let table = t.table("Table").unwrap();
        assert_eq!(
            table.key_schema,
            vec![("pk".into(), "HASH".into()), ("sk".into(), "RANGE".into())]
        );
        assert_eq!(table.global_secondary_indexes[0].name, "due-index");
        assert_eq!(
            table.global_secondary_indexes[0].projection_type,
            "KEYS_ONLY"
        );
        assert_eq!(table.ttl_attribute.as_deref(), Some("expires_at"));
        assert_eq!(table.billing_mode, "PAY_PER_REQUEST");
        for (queue, dlq) in [
            ("SyncQueue", "SyncDeadLetterQueue"),
            ("RulesQueue", "RulesDeadLetterQueue"),
        ] {
            let q = t.queue(queue).unwrap();
            assert_eq!(q.dead_letter.as_ref().unwrap().target, dlq);
            assert!(t.queue(dlq).unwrap().dead_letter.is_none());
        }
        assert!(t.secret("AppCredentialsSecret").is_some());
        let bins: Vec<&str> = t.functions.iter().map(|f| f.binary.as_str()).collect();
        for bin in [
            "oauth-callback",
            "sync-dispatcher",
            "mailbox-sync",
            "rule-eval",
            "management-api",
        ] {
            assert!(bins.contains(&bin), "{bin} missing from {bins:?}");
        }
        let sync = t.function_by_binary("mailbox-sync").unwrap();
        assert!(
            sync.environment.contains_key("TABLE_NAME"),
            "globals are merged"
        );
        assert!(sync.environment.contains_key("RULES_QUEUE_URL"));
        let api = t.function_by_binary("management-api").unwrap();
        assert!(api.http_routes.contains(&HttpRoute {
            method: "ANY".into(),
            path: "/api/{proxy+}".into()
        }));
        assert_eq!(
            sync.sqs_sources,
            vec![SqsSourceDef {
                queue: "SyncQueue".into(),
                batch_size: 5,
                report_batch_item_failures: true
            }]
        );
        let dispatcher = t.function_by_binary("sync-dispatcher").unwrap();
        assert_eq!(dispatcher.schedule_inputs.len(), 1);
        serde_json::from_str::<serde_json::Value>(&dispatcher.schedule_inputs[0])
            .expect("schedule input is JSON");
        // SQS visibility timeout must be at least six times the consuming function's timeout.
        let visibility = |q: &str| {
            t.queue(q).unwrap().attributes["VisibilityTimeout"]
                .parse::<u64>()
                .unwrap()
        };
        assert!(visibility("SyncQueue") >= 6 * sync.timeout_seconds);
        assert!(
            visibility("RulesQueue")
                >= 6 * t.function_by_binary("rule-eval").unwrap().timeout_seconds
        );
    }
}
