"""Active ISO 4217 currency codes (List One), hard-coded to avoid a dependency.

Source: the ISO 4217 maintenance agency's List One as of 2025, including
fund codes (e.g. ``BOV``, ``USN``) and the supranational units (``XAF``,
``XDR``, precious metals), but without ``XTS`` (reserved for testing) and
``XXX`` (no currency involved), which never name the money of a purchase.
Recently replaced codes are gone: ``HRK`` (euro, 2023), ``SLL`` (→ ``SLE``),
``ZWL`` (→ ``ZWG``), ``ANG`` (→ ``XCG``), ``CUC``, ``VEF`` (→ ``VES``).
``BGN`` is kept: the lev was still listed in 2025 and events may be historic.
"""

ACTIVE_CURRENCIES: frozenset[str] = frozenset(
    """
    AED AFN ALL AMD AOA ARS AUD AWG AZN
    BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP BYN BZD
    CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK
    DJF DKK DOP DZD
    EGP ERN ETB EUR
    FJD FKP
    GBP GEL GHS GIP GMD GNF GTQ GYD
    HKD HNL HTG HUF
    IDR ILS INR IQD IRR ISK
    JMD JOD JPY
    KES KGS KHR KMF KPW KRW KWD KYD KZT
    LAK LBP LKR LRD LSL LYD
    MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN
    NAD NGN NIO NOK NPR NZD
    OMR
    PAB PEN PGK PHP PKR PLN PYG
    QAR
    RON RSD RUB RWF
    SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL
    THB TJS TMT TND TOP TRY TTD TWD TZS
    UAH UGX USD USN UYI UYU UYW UZS
    VED VES VND VUV
    WST
    XAF XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD XPF XPT XSU XUA
    YER
    ZAR ZMW ZWG
    """.split()
)
