//! The product name, logo and primary colour of the console and the setup page (settings
//! `console_product_name`, `console_logo`, `console_primary_color`), a setting of each node.

/// The product's name, logo and primary colour on every page (settings `console_product_name`,
/// `console_logo`, `console_primary_color`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branding {
    pub product_name: String,
    /// A logo (SVG or PNG) read from a file at start, served from the binary's own address.
    pub logo: Option<Logo>,
    /// A CSS colour `#rrggbb`.
    pub primary_color: String,
}

/// A logo image and its content type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logo {
    pub bytes: std::sync::Arc<[u8]>,
    pub content_type: &'static str,
}

impl Default for Branding {
    fn default() -> Self {
        Branding {
            product_name: "Rollcall".into(),
            logo: None,
            primary_color: "#3451b2".into(),
        }
    }
}

impl Branding {
    /// Checks a colour given in configuration: `#rgb` or `#rrggbb`.
    pub fn valid_color(s: &str) -> bool {
        let hex = s.strip_prefix('#').unwrap_or("");
        matches!(hex.len(), 3 | 6) && hex.chars().all(|c| c.is_ascii_hexdigit())
    }

    /// The logo's content type from its file name (`.svg`, `.png`), or `None`.
    pub fn logo_type(path: &str) -> Option<&'static str> {
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".svg") {
            Some("image/svg+xml")
        } else if lower.ends_with(".png") {
            Some("image/png")
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_and_logos() {
        assert!(Branding::valid_color("#3451b2"));
        assert!(Branding::valid_color("#fff"));
        assert!(!Branding::valid_color("red;}"));
        assert!(!Branding::valid_color("#12345"));
        assert_eq!(Branding::logo_type("/etc/logo.SVG"), Some("image/svg+xml"));
        assert_eq!(Branding::logo_type("logo.gif"), None);
    }
}
