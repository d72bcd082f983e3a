//! Who a client is, for the access rules: on a mutual-TLS client listener (`--tls-client-ca`) the
//! verified client certificate's subject, as Kafka writes it (`User:` + the RFC 2253 form, e.g.
//! `User:CN=team-a,O=acme`), and each subject alternative name (`User:team-a.example.com`,
//! `User:spiffe://…`, `User:10.0.0.1`); otherwise `User:ANONYMOUS`. Reads the certificate rustls
//! already verified; must not verify anything itself.

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::X509Name;

use crate::tls::Stream;

/// Kafka's principal for a client with no certificate.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// A client's principal names: the first is the one logs show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub names: Vec<String>,
}

impl Principal {
    pub fn anonymous() -> Principal {
        Principal {
            names: vec![ANONYMOUS.to_string()],
        }
    }

    /// The name logs show.
    pub fn name(&self) -> &str {
        self.names.first().map_or(ANONYMOUS, String::as_str)
    }

    /// The principal of a connection: its client certificate's names when it presented one.
    pub fn of(stream: &Stream) -> Principal {
        let Stream::Server(tls) = stream else {
            return Principal::anonymous();
        };
        let certificate = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first());
        match certificate {
            Some(der) => Principal::from_der(der.as_ref()).unwrap_or_else(|| {
                tracing::warn!("a verified client certificate does not parse; treating the client as ANONYMOUS");
                Principal::anonymous()
            }),
            None => Principal::anonymous(),
        }
    }

    /// The names of a DER certificate, or `None` if it does not parse.
    pub fn from_der(der: &[u8]) -> Option<Principal> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let mut names = vec![format!("User:{}", rfc2253(cert.subject()))];
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                let text = match name {
                    GeneralName::DNSName(s) | GeneralName::URI(s) | GeneralName::RFC822Name(s) => {
                        s.to_string()
                    }
                    GeneralName::IPAddress(b) => match b.len() {
                        4 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*b).ok()?).to_string(),
                        16 => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*b).ok()?).to_string(),
                        _ => continue,
                    },
                    _ => continue,
                };
                names.push(format!("User:{text}"));
            }
        }
        Some(Principal { names })
    }
}

/// A distinguished name in RFC 2253 form (what Java's `X500Principal.getName()` gives Kafka): the
/// last RDN first, `,` between RDNs, `+` inside one, special characters escaped.
fn rfc2253(name: &X509Name) -> String {
    let rdns: Vec<String> = name
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|attr| {
                    let key = keyword(&attr.attr_type().to_id_string());
                    let value = match attr.as_str() {
                        Ok(s) => escape(s),
                        Err(_) => format!(
                            "#{}",
                            attr.as_slice()
                                .iter()
                                .map(|b| format!("{b:02x}"))
                                .collect::<String>()
                        ),
                    };
                    format!("{key}={value}")
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// RFC 2253's keywords for the attribute types it names; others stay dotted.
fn keyword(oid: &str) -> String {
    match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        other => other,
    }
    .to_string()
}

fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        let edge = (i == 0 && (c == ' ' || c == '#')) || (i + 1 == value.len() && c == ' ');
        if edge || matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_and_alternative_names() {
        let mut params =
            rcgen::CertificateParams::new(vec!["team-a.example.com".to_string()]).expect("params");
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::OrganizationName, "acme, inc");
        dn.push(rcgen::DnType::CommonName, "team-a");
        params.distinguished_name = dn;
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let p = Principal::from_der(cert.der()).unwrap();
        assert_eq!(
            p.names,
            [
                "User:CN=team-a,O=acme\\, inc",
                "User:team-a.example.com",
                "User:127.0.0.1"
            ]
        );
        assert_eq!(p.name(), "User:CN=team-a,O=acme\\, inc");
    }

    #[test]
    fn garbage_is_no_principal() {
        assert!(Principal::from_der(b"not a certificate").is_none());
        assert_eq!(Principal::anonymous().name(), ANONYMOUS);
    }
}
