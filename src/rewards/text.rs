//! Text normalisation shared by the rewards: case and accent folding for loose comparisons.

/// Removes the diacritics of Latin letters (PT-BR, ES, FR, DE coverage: `ã` → `a`, `ç` → `c`,
/// `É` → `E`); other characters pass through unchanged. A small table instead of full Unicode
/// decomposition keeps the dependency list short; it covers Latin-1 and the common Latin
/// Extended-A letters.
pub fn fold_accents(s: &str) -> String {
    s.chars().map(fold_char).collect()
}

fn fold_char(c: char) -> char {
    match c {
        'á' | 'à' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => 'a',
        'Á' | 'À' | 'Â' | 'Ã' | 'Ä' | 'Å' | 'Ā' | 'Ă' | 'Ą' => 'A',
        'ç' | 'ć' | 'č' => 'c',
        'Ç' | 'Ć' | 'Č' => 'C',
        'é' | 'è' | 'ê' | 'ë' | 'ē' | 'ę' | 'ě' => 'e',
        'É' | 'È' | 'Ê' | 'Ë' | 'Ē' | 'Ę' | 'Ě' => 'E',
        'í' | 'ì' | 'î' | 'ï' | 'ī' => 'i',
        'Í' | 'Ì' | 'Î' | 'Ï' | 'Ī' => 'I',
        'ñ' | 'ń' | 'ň' => 'n',
        'Ñ' | 'Ń' | 'Ň' => 'N',
        'ó' | 'ò' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' => 'o',
        'Ó' | 'Ò' | 'Ô' | 'Õ' | 'Ö' | 'Ø' | 'Ō' | 'Ő' => 'O',
        'ú' | 'ù' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' => 'u',
        'Ú' | 'Ù' | 'Û' | 'Ü' | 'Ū' | 'Ů' | 'Ű' => 'U',
        'ý' | 'ÿ' => 'y',
        'Ý' | 'Ÿ' => 'Y',
        'š' => 's',
        'Š' => 'S',
        'ž' => 'z',
        'Ž' => 'Z',
        other => other,
    }
}

/// The comparison key of a string: trimmed, inner whitespace runs collapsed to one space,
/// optionally lower-cased and accent-folded.
pub fn match_key(s: &str, case_insensitive: bool, accent_insensitive: bool) -> String {
    let mut out = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if accent_insensitive {
        out = fold_accents(&out);
    }
    if case_insensitive {
        out = out.to_lowercase();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_portuguese() {
        assert_eq!(fold_accents("Não, é ótimo! Ação"), "Nao, e otimo! Acao");
        assert_eq!(fold_accents("emoji 😀 stays"), "emoji 😀 stays");
    }

    #[test]
    fn match_key_options() {
        assert_eq!(
            match_key("  Eletrônicos \n Casa ", true, true),
            "eletronicos casa"
        );
        assert_eq!(match_key("Eletrônicos", false, false), "Eletrônicos");
        assert_eq!(match_key("Eletrônicos", true, false), "eletrônicos");
    }
}
