//! The built-in user directory: a YAML file of users with argon2id password hashes, read on every
//! sign-in so `user add` takes effect without a restart.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UsersFile {
    #[serde(default)]
    pub users: Vec<User>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub username: String,
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    pub password_hash: String,
}

/// Identity claims of a signed-in user, copied into sessions and access tokens.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserClaims {
    pub username: String,
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
}

impl User {
    pub fn claims(&self) -> UserClaims {
        UserClaims {
            username: self.username.clone(),
            email: self.email.clone(),
            name: self.name.clone(),
            groups: self.groups.clone(),
        }
    }
}

/// Reads the users file. A missing file is an empty directory (nobody can sign in yet).
pub fn load(path: &Path) -> anyhow::Result<UsersFile> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(UsersFile::default()),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read users file {}", path.display()))
        }
    };
    serde_yaml_ng::from_str(&text)
        .with_context(|| format!("users file {} is not valid", path.display()))
}

/// Checks the fields `user add` writes; errors name the flag.
pub fn validate_new_user(
    username: &str,
    email: &str,
    name: Option<&str>,
    groups: &[String],
) -> anyhow::Result<()> {
    if username.is_empty()
        || username.len() > 200
        || !username.chars().all(|c| c.is_ascii_graphic())
    {
        bail!("--username must be 1 to 200 printable ASCII characters without spaces");
    }
    let at = email.find('@');
    if email.len() > 254
        || email.chars().any(|c| c.is_whitespace() || c.is_control())
        || !matches!(at, Some(i) if i > 0 && i < email.len() - 1)
    {
        bail!("--email must be an address like user@example.com");
    }
    if let Some(name) = name {
        if name.trim().is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
            bail!("--name must be 1 to 200 characters without control characters");
        }
    }
    for g in groups {
        if g.is_empty() || g.len() > 200 || g.chars().any(|c| c.is_control()) {
            bail!("--group values must be 1 to 200 characters without control characters");
        }
    }
    Ok(())
}

/// argon2id (the crate's default parameters) with a random 16-byte salt, in PHC string format.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("cannot hash password: {e}"))?;
    Ok(hash.to_string())
}

/// Verifies a password against a PHC hash; a malformed hash verifies nothing.
pub fn verify_password(password: &str, phc_hash: &str) -> bool {
    match PasswordHash::new(phc_hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Finds the user and checks the password. Unknown users still cost one argon2 verification, so
/// timing does not reveal which usernames exist. Blocking: call from `spawn_blocking`.
pub fn authenticate(users: &UsersFile, username: &str, password: &str) -> Option<UserClaims> {
    // A hash of a random string, used only to spend the same time on unknown users.
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    match users.users.iter().find(|u| u.username == username) {
        Some(user) if verify_password(password, &user.password_hash) => Some(user.claims()),
        Some(_) => None,
        None => {
            let dummy = DUMMY.get_or_init(|| {
                hash_password(&crate::oauth::opaque_token::generate()).unwrap_or_default()
            });
            verify_password(password, dummy);
            None
        }
    }
}

/// Adds or replaces a user in the users file, creating the file (0600) and its directory.
pub fn upsert(path: &Path, user: User) -> anyhow::Result<bool> {
    let mut file = load(path)?;
    let replaced = match file.users.iter_mut().find(|u| u.username == user.username) {
        Some(existing) => {
            *existing = user;
            true
        }
        None => {
            file.users.push(user);
            false
        }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create directory {}", dir.display()))?;
    }
    let text = serde_yaml_ng::to_string(&file).context("cannot serialize users file")?;
    let tmp = path.with_extension("yaml.tmp");
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(replaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verify_and_authenticate() {
        let hash = hash_password("correct horse").expect("hash");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong", &hash));
        assert!(!verify_password("x", "not a hash"));
        let users = UsersFile {
            users: vec![User {
                username: "alice".into(),
                email: "alice@example.com".into(),
                name: Some("Alice".into()),
                groups: vec!["eng".into()],
                password_hash: hash,
            }],
        };
        assert_eq!(
            authenticate(&users, "alice", "correct horse").map(|c| c.email),
            Some("alice@example.com".into())
        );
        assert!(authenticate(&users, "alice", "nope").is_none());
        assert!(authenticate(&users, "bob", "correct horse").is_none());
    }

    #[test]
    fn upsert_creates_and_replaces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/users.yaml");
        let user = |email: &str| User {
            username: "alice".into(),
            email: email.into(),
            name: None,
            groups: vec![],
            password_hash: "h".into(),
        };
        assert!(!upsert(&path, user("a@example.com")).expect("create"));
        assert!(upsert(&path, user("b@example.com")).expect("replace"));
        let file = load(&path).expect("load");
        assert_eq!(file.users.len(), 1);
        assert_eq!(file.users[0].email, "b@example.com");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn new_user_fields_are_checked() {
        assert!(validate_new_user("alice", "a@example.com", None, &[]).is_ok());
        assert!(validate_new_user("al ice", "a@example.com", None, &[])
            .unwrap_err()
            .to_string()
            .contains("--username"));
        assert!(validate_new_user("alice", "nope", None, &[])
            .unwrap_err()
            .to_string()
            .contains("--email"));
        assert!(validate_new_user("alice", "a@example.com", Some(" "), &[]).is_err());
        assert!(validate_new_user("alice", "a@example.com", None, &[String::new()]).is_err());
    }
}
