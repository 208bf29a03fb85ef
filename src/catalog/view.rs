//! What one MCP endpoint exposes: a [`ScopeView`] per scope, built once per
//! catalog snapshot, holding the name → feature maps requests look up and the
//! list answers serialized ahead of time.
//!
//! Naming: tools and prompts are `<slug><separator><name>`; resources and
//! templates are `switchyard://<slug>/<original URI>` (the original URI kept
//! whole after the gateway's slug, so routing is a prefix strip and a slug
//! lookup, never a guess). A passthrough server exposes everything unchanged.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use super::model::{Gateway, Item, ItemKind, Tool};
use super::naming;
use crate::jsonrpc;
use crate::FastHash;

/// The scheme of namespaced resource URIs.
pub const URI_SCHEME: &str = "switchyard://";

pub struct ScopeView {
    passthrough: bool,
    gateways: Vec<Arc<Gateway>>,
    tools: HashMap<String, Arc<Tool>, FastHash>,
    prompts: HashMap<String, Arc<Item>, FastHash>,
    tools_list: Box<RawValue>,
    prompts_list: Box<RawValue>,
    resources_list: Box<RawValue>,
    templates_list: Box<RawValue>,
    capabilities: Box<RawValue>,
}

impl ScopeView {
    pub fn tool(&self, exposed_name: &str) -> Option<&Arc<Tool>> {
        self.tools.get(exposed_name)
    }

    pub fn prompt(&self, exposed_name: &str) -> Option<&Arc<Item>> {
        self.prompts.get(exposed_name)
    }

    /// `{"tools": [...]}`, ready to send.
    pub fn tools_list(&self) -> &RawValue {
        &self.tools_list
    }

    pub fn prompts_list(&self) -> &RawValue {
        &self.prompts_list
    }

    pub fn resources_list(&self) -> &RawValue {
        &self.resources_list
    }

    pub fn templates_list(&self) -> &RawValue {
        &self.templates_list
    }

    /// The `capabilities` this endpoint advertises: what its gateways support.
    pub fn capabilities(&self) -> &RawValue {
        &self.capabilities
    }

    /// The gateways behind this endpoint.
    pub fn gateways(&self) -> &[Arc<Gateway>] {
        &self.gateways
    }

    pub fn is_passthrough(&self) -> bool {
        self.passthrough
    }

    /// Which gateway serves `uri`, and the URI it knows it by.
    pub fn resolve_uri(&self, uri: &str) -> Option<(&Arc<Gateway>, String)> {
        if self.passthrough {
            return self.gateways.first().map(|g| (g, uri.to_owned()));
        }
        let rest = uri.strip_prefix(URI_SCHEME)?;
        let (slug, original) = rest.split_once('/')?;
        let gateway = self.gateways.iter().find(|g| g.slug == slug)?;
        Some((gateway, original.to_owned()))
    }

    /// The URI a client sees for `original` on `gateway`.
    pub fn expose_uri(&self, gateway: &Gateway, original: &str) -> String {
        if self.passthrough {
            original.to_owned()
        } else {
            format!("{URI_SCHEME}{}/{original}", gateway.slug)
        }
    }

    /// The name a client sees for a prompt or tool named `original` on `gateway`.
    pub fn expose_name(&self, gateway: &Gateway, separator: &str, original: &str) -> String {
        if self.passthrough {
            original.to_owned()
        } else {
            naming::exposed_name(&gateway.slug, separator, original)
        }
    }
}

/// Builds the view of one endpoint from the features it exposes.
pub fn build(
    gateways: Vec<Arc<Gateway>>,
    tools: &[&Arc<Tool>],
    items: &[&Arc<Item>],
    passthrough: bool,
    separator: &str,
) -> ScopeView {
    let mut view = ScopeView {
        passthrough,
        gateways,
        tools: HashMap::default(),
        prompts: HashMap::default(),
        tools_list: jsonrpc::raw("{}".into()),
        prompts_list: jsonrpc::raw("{}".into()),
        resources_list: jsonrpc::raw("{}".into()),
        templates_list: jsonrpc::raw("{}".into()),
        capabilities: jsonrpc::raw("{}".into()),
    };
    let mut listed_tools: Vec<(String, Value)> = Vec::new();
    for t in tools {
        let name = view.expose_name(&t.gateway, separator, &t.original_name);
        // Conflicts are refused at registration; if the data still has one, the first wins.
        if view.tools.contains_key(&name) {
            tracing::warn!(tool = %name, gateway = %t.gateway.name, "duplicate exposed tool name ignored");
            continue;
        }
        listed_tools.push((name.clone(), renamed(&t.definition, "name", &name)));
        view.tools.insert(name, Arc::clone(t));
    }
    let mut listed_prompts: Vec<(String, Value)> = Vec::new();
    let mut listed_resources: Vec<(String, Value)> = Vec::new();
    let mut listed_templates: Vec<(String, Value)> = Vec::new();
    for item in items {
        match item.kind {
            ItemKind::Prompt => {
                let name = view.expose_name(&item.gateway, separator, &item.key);
                if view.prompts.contains_key(&name) {
                    continue;
                }
                listed_prompts.push((name.clone(), renamed(&item.definition, "name", &name)));
                view.prompts.insert(name, Arc::clone(item));
            }
            ItemKind::Resource => {
                let uri = view.expose_uri(&item.gateway, &item.key);
                listed_resources.push((uri.clone(), renamed(&item.definition, "uri", &uri)));
            }
            ItemKind::Template => {
                let uri = view.expose_uri(&item.gateway, &item.key);
                listed_templates
                    .push((uri.clone(), renamed(&item.definition, "uriTemplate", &uri)));
            }
        }
    }
    let sorted = |mut v: Vec<(String, Value)>| {
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.dedup_by(|a, b| a.0 == b.0);
        Value::Array(v.into_iter().map(|(_, d)| d).collect())
    };
    view.tools_list = jsonrpc::to_raw(&json!({ "tools": sorted(listed_tools) }));
    view.prompts_list = jsonrpc::to_raw(&json!({ "prompts": sorted(listed_prompts) }));
    view.resources_list = jsonrpc::to_raw(&json!({ "resources": sorted(listed_resources) }));
    view.templates_list =
        jsonrpc::to_raw(&json!({ "resourceTemplates": sorted(listed_templates) }));
    view.capabilities = jsonrpc::to_raw(&capabilities(&view.gateways));
    view
}

fn renamed(definition: &Value, field: &str, value: &str) -> Value {
    let mut def = definition.clone();
    if let Value::Object(map) = &mut def {
        map.insert(field.to_owned(), Value::String(value.to_owned()));
    }
    def
}

/// The union of what the gateways behind an endpoint support. Tools are always
/// offered (the list may be empty); the gateway handles `listChanged` itself.
fn capabilities(gateways: &[Arc<Gateway>]) -> Value {
    let has = |key: &str| {
        gateways
            .iter()
            .any(|g| g.capabilities.get(key).is_some_and(|v| !v.is_null()))
    };
    let mut caps = Map::new();
    caps.insert("tools".into(), json!({ "listChanged": true }));
    if has("prompts") {
        caps.insert("prompts".into(), json!({ "listChanged": true }));
    }
    if has("resources") {
        let subscribe = gateways
            .iter()
            .any(|g| g.capabilities.pointer("/resources/subscribe") == Some(&Value::Bool(true)));
        caps.insert(
            "resources".into(),
            json!({ "listChanged": true, "subscribe": subscribe }),
        );
    }
    if has("logging") {
        caps.insert("logging".into(), json!({}));
    }
    if has("completions") {
        caps.insert("completions".into(), json!({}));
    }
    Value::Object(caps)
}
