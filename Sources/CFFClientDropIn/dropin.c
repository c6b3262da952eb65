/* The drop-in product's own object: nothing but the SONAME flag in Package.swift. */
