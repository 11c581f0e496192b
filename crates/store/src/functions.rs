//! Storage of functions (the Lambda role).

use async_trait::async_trait;
use tenancy_domain::function::Function;
use tenancy_domain::Result;

use crate::store::Effects;

/// A function with its signing secret, sealed (as the application stores it).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFunction {
    pub function: Function,
    /// The `whsec_` secret, sealed under the master key for the owner
    /// `function/<name>`.
    pub secret: String,
}

/// Object safe: held as `Arc<dyn FunctionStore>` (see [`crate::Store::functions`]).
#[async_trait]
pub trait FunctionStore: Send + Sync {
    /// Creates a function or replaces its url and timeout, in one transaction with
    /// `fx`. A new function takes `f.secret`; a replaced one keeps its own secret and
    /// `created_at`. Returns the stored function and whether it was created.
    async fn function_put(&self, f: &StoredFunction, fx: &Effects) -> Result<(StoredFunction, bool)>;
    async fn function_get(&self, name: &str) -> Result<StoredFunction>;
    /// Every function, by name.
    async fn function_list(&self) -> Result<Vec<Function>>;
    async fn function_delete(&self, name: &str, fx: &Effects) -> Result<()>;
}
