//! Creates every table, queue and secret of `infra/template.yaml` in the emulator, under a
//! name prefix, so each test has its own resources in one shared emulator.

use std::collections::BTreeMap;

use anyhow::{Context, anyhow, bail};
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
    LocalSecondaryIndex, Projection, ProjectionType, ProvisionedThroughput, ScalarAttributeType,
    TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;

use crate::stack::{ACCOUNT_ID, DEFAULT_REGION};
use crate::template::{IndexDef, Resolve, SecretInit, Template};

/// The resources created for one prefix. The named fields are the ones every test needs; the
/// maps hold every resource of the template by logical id.
#[derive(Debug, Clone)]
pub struct Resources {
    pub prefix: String,
    pub table_name: String,
    pub sync_queue_url: String,
    pub rules_queue_url: String,
    pub sync_dlq_url: String,
    pub rules_dlq_url: String,
    /// ARN of the app-credentials secret (what `!Ref AppCredentialsSecret` gives in AWS).
    pub app_credentials_secret_id: String,
    /// Name prefix of the per-integration refresh-token secrets, from the template.
    pub token_secret_prefix: String,
    /// Logical id -> table name.
    pub tables: BTreeMap<String, String>,
    /// Logical id -> queue URL.
    pub queue_urls: BTreeMap<String, String>,
    /// Logical id -> queue ARN.
    pub queue_arns: BTreeMap<String, String>,
    /// Logical id -> secret ARN.
    pub secret_arns: BTreeMap<String, String>,
    template: Template,
}

impl Resources {
    /// The environment the template gives function `binary`, with every reference to a table,
    /// queue, secret and `AWS::*` pseudo parameter resolved to this prefix's resources and
    /// `parameters` (e.g. `("AppClientId", "...")`) filling template parameters (their defaults
    /// apply otherwise). Variables that cannot be known locally (`PUBLIC_BASE_URL`, which
    /// depends on the HTTP API) are left out: the caller adds them, and overrides
    /// `GRAPH_BASE_URL`/`LOGIN_BASE_URL` to point at the simulator.
    pub fn function_env(
        &self,
        binary: &str,
        parameters: &[(&str, &str)],
    ) -> anyhow::Result<Vec<(String, String)>> {
        let function = self
            .template
            .function_by_binary(binary)
            .ok_or_else(|| anyhow!("no function with binary `{binary}` in the template"))?;
        let ctx = Names {
            resources: self,
            parameters,
        };
        Ok(function
            .environment
            .iter()
            .filter_map(|(name, expr)| Some((name.clone(), expr.resolve(&ctx)?)))
            .collect())
    }

    /// The parsed template these resources were made from.
    pub fn template(&self) -> &Template {
        &self.template
    }
}

struct Names<'a> {
    resources: &'a Resources,
    parameters: &'a [(&'a str, &'a str)],
}

impl Resolve for Names<'_> {
    fn reference(&self, name: &str) -> Option<String> {
        let r = self.resources;
        match name {
            "AWS::StackName" => Some(r.prefix.clone()),
            "AWS::Region" => Some(DEFAULT_REGION.into()),
            "AWS::AccountId" => Some(ACCOUNT_ID.into()),
            "AWS::Partition" => Some("aws".into()),
            "AWS::URLSuffix" => Some("amazonaws.com".into()),
            _ => r
                .tables
                .get(name)
                .or_else(|| r.queue_urls.get(name))
                .or_else(|| r.secret_arns.get(name))
                .cloned()
                .or_else(|| {
                    self.parameters
                        .iter()
                        .find(|(k, _)| *k == name)
                        .map(|(_, v)| (*v).to_owned())
                })
                .or_else(|| r.template.parameters.get(name).cloned().flatten()),
        }
    }

    fn attribute(&self, resource: &str, attribute: &str) -> Option<String> {
        let r = self.resources;
        match attribute {
            "Arn" => r
                .queue_arns
                .get(resource)
                .or_else(|| r.secret_arns.get(resource))
                .cloned()
                .or_else(|| {
                    r.tables.get(resource).map(|t| {
                        format!("arn:aws:dynamodb:{DEFAULT_REGION}:{ACCOUNT_ID}:table/{t}")
                    })
                }),
            "QueueName" => r
                .queue_urls
                .get(resource)
                .and_then(|u| u.rsplit('/').next())
                .map(str::to_owned),
            "QueueUrl" => r.queue_urls.get(resource).cloned(),
            _ => None,
        }
    }
}

/// Resolves names while provisioning: only the prefix and pseudo parameters.
struct PrefixOnly<'a>(&'a str);

impl Resolve for PrefixOnly<'_> {
    fn reference(&self, name: &str) -> Option<String> {
        match name {
            "AWS::StackName" => Some(self.0.to_owned()),
            "AWS::Region" => Some(DEFAULT_REGION.into()),
            "AWS::AccountId" => Some(ACCOUNT_ID.into()),
            _ => None,
        }
    }
    fn attribute(&self, _: &str, _: &str) -> Option<String> {
        None
    }
}

/// Creates every table (with its indexes and TTL), queue (dead-letter queues first, with the
/// redrive policy) and secret (with a generated placeholder value) of `infra/template.yaml`,
/// named `{prefix}-{LogicalId}` (secrets: their templated `Name` with the prefix as stack name).
pub async fn provision(sdk_config: &SdkConfig, prefix: &str) -> anyhow::Result<Resources> {
    provision_template(sdk_config, prefix, Template::load()?).await
}

pub async fn provision_template(
    sdk_config: &SdkConfig,
    prefix: &str,
    template: Template,
) -> anyhow::Result<Resources> {
    if prefix.is_empty()
        || !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("prefix `{prefix}` must be non-empty ASCII letters, digits, '-' or '_'");
    }
    let dynamo = aws_sdk_dynamodb::Client::new(sdk_config);
    let sqs = aws_sdk_sqs::Client::new(sdk_config);
    let secrets = aws_sdk_secretsmanager::Client::new(sdk_config);

    let mut tables = BTreeMap::new();
    for table in &template.tables {
        let name = format!("{prefix}-{}", table.logical_id);
        create_table(&dynamo, &name, table)
            .await
            .with_context(|| format!("creating table {name}"))?;
        tables.insert(table.logical_id.clone(), name);
    }

    let mut queue_urls = BTreeMap::new();
    let mut queue_arns = BTreeMap::new();
    // Dead-letter queues first: a redrive policy needs its target's ARN.
    let mut pending: Vec<_> = template.queues.iter().collect();
    while !pending.is_empty() {
        let ready = pending
            .iter()
            .position(|q| {
                q.dead_letter
                    .as_ref()
                    .is_none_or(|d| queue_arns.contains_key(&d.target))
            })
            .ok_or_else(|| {
                anyhow!("queue redrive policies form a cycle or name a missing queue")
            })?;
        let queue = pending.remove(ready);
        let mut name = format!("{prefix}-{}", queue.logical_id);
        if queue.fifo {
            name.push_str(".fifo");
        }
        if name.len() > 80 {
            bail!("queue name {name} is longer than SQS's 80 characters; use a shorter prefix");
        }
        let mut request = sqs.create_queue().queue_name(&name);
        for (key, value) in &queue.attributes {
            request = request.attributes(QueueAttributeName::from(key.as_str()), value);
        }
        if queue.fifo {
            request = request.attributes(QueueAttributeName::FifoQueue, "true");
        }
        if let Some(dead_letter) = &queue.dead_letter {
            let policy = serde_json::json!({
                "deadLetterTargetArn": queue_arns[&dead_letter.target],
                "maxReceiveCount": dead_letter.max_receive_count,
            });
            request = request.attributes(QueueAttributeName::RedrivePolicy, policy.to_string());
        }
        let url = request
            .send()
            .await
            .with_context(|| format!("creating queue {name}"))?
            .queue_url
            .ok_or_else(|| anyhow!("no URL for queue {name}"))?;
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .with_context(|| format!("reading the ARN of {name}"))?
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .ok_or_else(|| anyhow!("no ARN for queue {name}"))?;
        queue_urls.insert(queue.logical_id.clone(), url);
        queue_arns.insert(queue.logical_id.clone(), arn);
    }

    let mut secret_arns = BTreeMap::new();
    for secret in &template.secrets {
        let name = match &secret.name {
            Some(expr) => expr.resolve(&PrefixOnly(prefix)).ok_or_else(|| {
                anyhow!(
                    "cannot resolve the name of secret {}: {expr:?}",
                    secret.logical_id
                )
            })?,
            None => format!("{prefix}-{}", secret.logical_id),
        };
        let mut request = secrets.create_secret().name(&name);
        if let Some(description) = &secret.description {
            request = request.description(description);
        }
        if let Some(value) = initial_value(&secret.initial)? {
            request = request.secret_string(value);
        }
        let arn = request
            .send()
            .await
            .with_context(|| format!("creating secret {name}"))?
            .arn
            .ok_or_else(|| anyhow!("no ARN for secret {name}"))?;
        secret_arns.insert(secret.logical_id.clone(), arn);
    }

    let token_secret_prefix = template
        .functions
        .iter()
        .find_map(|f| f.environment.get("TOKEN_SECRET_PREFIX"))
        .and_then(|e| e.resolve(&PrefixOnly(prefix)))
        .ok_or_else(|| anyhow!("the template sets no resolvable TOKEN_SECRET_PREFIX"))?;
    let named = |map: &BTreeMap<String, String>, id: &str, kind: &str| {
        map.get(id)
            .cloned()
            .ok_or_else(|| anyhow!("the template has no {kind} `{id}`"))
    };
    Ok(Resources {
        prefix: prefix.to_owned(),
        table_name: named(&tables, "Table", "table")?,
        sync_queue_url: named(&queue_urls, "SyncQueue", "queue")?,
        rules_queue_url: named(&queue_urls, "RulesQueue", "queue")?,
        sync_dlq_url: named(&queue_urls, "SyncDeadLetterQueue", "queue")?,
        rules_dlq_url: named(&queue_urls, "RulesDeadLetterQueue", "queue")?,
        app_credentials_secret_id: named(&secret_arns, "AppCredentialsSecret", "secret")?,
        token_secret_prefix,
        tables,
        queue_urls,
        queue_arns,
        secret_arns,
        template,
    })
}

fn key_schema(pairs: &[(String, String)]) -> anyhow::Result<Vec<KeySchemaElement>> {
    pairs
        .iter()
        .map(|(name, kind)| {
            Ok(KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(KeyType::from(kind.as_str()))
                .build()?)
        })
        .collect()
}

fn projection(index: &IndexDef) -> Projection {
    let mut projection =
        Projection::builder().projection_type(ProjectionType::from(index.projection_type.as_str()));
    for attribute in &index.non_key_attributes {
        projection = projection.non_key_attributes(attribute);
    }
    projection.build()
}

async fn create_table(
    dynamo: &aws_sdk_dynamodb::Client,
    name: &str,
    table: &crate::template::TableDef,
) -> anyhow::Result<()> {
    let provisioned = table.billing_mode != "PAY_PER_REQUEST";
    let throughput = || {
        ProvisionedThroughput::builder()
            .read_capacity_units(5)
            .write_capacity_units(5)
            .build()
    };
    let mut request = dynamo
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::from(table.billing_mode.as_str()))
        .set_key_schema(Some(key_schema(&table.key_schema)?));
    if provisioned {
        request = request.provisioned_throughput(throughput()?);
    }
    for (attribute, kind) in &table.attribute_definitions {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(attribute)
                .attribute_type(ScalarAttributeType::from(kind.as_str()))
                .build()?,
        );
    }
    for index in &table.global_secondary_indexes {
        let mut gsi = GlobalSecondaryIndex::builder()
            .index_name(&index.name)
            .set_key_schema(Some(key_schema(&index.key_schema)?))
            .projection(projection(index));
        if provisioned {
            gsi = gsi.provisioned_throughput(throughput()?);
        }
        request = request.global_secondary_indexes(gsi.build()?);
    }
    for index in &table.local_secondary_indexes {
        request = request.local_secondary_indexes(
            LocalSecondaryIndex::builder()
                .index_name(&index.name)
                .set_key_schema(Some(key_schema(&index.key_schema)?))
                .projection(projection(index))
                .build()?,
        );
    }
    request.send().await?;
    if let Some(attribute) = &table.ttl_attribute {
        dynamo
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(attribute)
                    .enabled(true)
                    .build()?,
            )
            .send()
            .await
            .context("enabling TTL")?;
    }
    Ok(())
}

/// The value CloudFormation would create: the literal, or a random alphanumeric password,
/// placed under `key` in the JSON template when the template has one.
fn initial_value(init: &SecretInit) -> anyhow::Result<Option<String>> {
    Ok(match init {
        SecretInit::Literal(value) => Some(value.clone()),
        SecretInit::Empty => None,
        SecretInit::Generate {
            json_template,
            key,
            length,
        } => {
            let mut password = String::new();
            while password.len() < *length {
                password.push_str(&uuid::Uuid::new_v4().simple().to_string());
            }
            password.truncate(*length);
            match (json_template, key) {
                (Some(template), Some(key)) => {
                    let mut doc: serde_json::Map<String, serde_json::Value> =
                        serde_json::from_str(template)
                            .context("SecretStringTemplate is not a JSON object")?;
                    doc.insert(key.clone(), password.into());
                    Some(serde_json::Value::Object(doc).to_string())
                }
                _ => Some(password),
            }
        }
    })
}
