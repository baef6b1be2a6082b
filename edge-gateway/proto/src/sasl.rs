//! SASL messages as every protocol decodes them.

/// The SASL PLAIN message (RFC 4616), base64-decoded: `authzid NUL authcid
/// NUL passwd`. Returns (authcid, password) when the authorization identity
/// is empty or the same as the authentication identity (no proxy logins).
pub fn sasl_plain(b64: &str) -> Result<(String, String), &'static str> {
    let raw = base64_decode(b64).ok_or("invalid base64")?;
    let raw = String::from_utf8(raw).map_err(|_| "PLAIN message is not UTF-8")?;
    let mut parts = raw.split('\0');
    let (Some(authz), Some(authc), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed PLAIN message");
    };
    if authc.is_empty() || password.is_empty() {
        return Err("malformed PLAIN message");
    }
    if !authz.is_empty() && authz != authc {
        return Err("authorization identity must be the login name");
    }
    Ok((authc.to_string(), password.to_string()))
}

pub use stratus_core::base64::decode as base64_decode;

/// A base64 SASL response that must be UTF-8 text (AUTH LOGIN's user
/// name and password).
pub fn base64_text(response: &str) -> Option<String> {
    base64_decode(response.trim()).and_then(|b| String::from_utf8(b).ok())
}
