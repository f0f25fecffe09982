//! OAuth request parameters from a query string or a form body. OAuth forbids repeating a
//! parameter (RFC 6749 §3.1) and treats an empty value as absent, which serde's form decoding
//! does not express, hence this small wrapper over `form_urlencoded`.

/// A parameter that appeared more than once (RFC 6749 §3.1 forbids it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parameter {0} must not be repeated")]
pub struct RepeatedParam(pub String);

#[derive(Debug, Clone, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(encoded: &str) -> Self {
        Self(
            url::form_urlencoded::parse(encoded.as_bytes())
                .into_owned()
                .collect(),
        )
    }

    /// The parameter's value, `None` when absent or empty, an error naming it when repeated.
    pub fn single(&self, name: &str) -> Result<Option<&str>, RepeatedParam> {
        let mut values = self
            .0
            .iter()
            .filter(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str());
        let first = values.next();
        if values.next().is_some() {
            return Err(RepeatedParam(name.to_string()));
        }
        Ok(first)
    }

    /// Every non-empty value of a parameter.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_and_empty_parameters() {
        let p = Params::parse("a=1&b=&c=x%20y&c=z&d=%2B");
        assert_eq!(p.single("a"), Ok(Some("1")));
        assert_eq!(p.single("b"), Ok(None));
        assert_eq!(p.single("missing"), Ok(None));
        assert!(p
            .single("c")
            .unwrap_err()
            .to_string()
            .contains("c must not be repeated"));
        assert_eq!(p.all("c"), vec!["x y", "z"]);
        assert_eq!(p.single("d"), Ok(Some("+")));
    }
}
