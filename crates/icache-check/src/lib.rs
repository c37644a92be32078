//! placeholder, replaced by the checker work (issue 3)
