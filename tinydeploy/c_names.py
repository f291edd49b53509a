"""C identifiers that never collide with C/C++ keywords or standard-library names.

Names made from user input (``carray --name``, sketch names, generated model names) are
checked with ``is_reserved``: a C/C++ keyword, a standard macro/type/function name
(``NULL``, ``EOF``, ``errno``, ``size_t``, ``INT8_MAX``, ``printf``, ``main``...), a name
ending in ``_t`` (POSIX reserves them), starting with ``__`` or ``_`` + capital letter
(reserved to the implementation) or an ``INT...``/``UINT...`` name ending in ``_MAX``,
``_MIN``, ``_C`` or ``_WIDTH`` (stdint.h). ``reserved_safe`` turns such a name into a legal,
non-reserved one.
"""

from __future__ import annotations

import re


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())

C_KEYWORDS = _words("""
auto break case char const continue default do double else enum extern float for goto if
inline int long register restrict return short signed sizeof static struct switch typedef
union unsigned void volatile while _Alignas _Alignof _Atomic _Bool _Complex _Generic
_Imaginary _Noreturn _Static_assert _Thread_local bool true false alignas alignof
static_assert thread_local typeof nullptr constexpr
""")

CPP_KEYWORDS = _words("""
and and_eq asm bitand bitor catch char8_t char16_t char32_t class compl concept consteval
constinit const_cast co_await co_return co_yield decltype delete dynamic_cast explicit
export friend mutable namespace new noexcept not not_eq operator or or_eq private
protected public reinterpret_cast requires static_cast template this throw try typeid
typename using virtual wchar_t xor xor_eq final override import module
""")

STD_NAMES = _words("""
NULL EOF errno size_t ssize_t ptrdiff_t wchar_t max_align_t offsetof FILE fpos_t stdin
stdout stderr BUFSIZ FILENAME_MAX FOPEN_MAX L_tmpnam SEEK_SET SEEK_CUR SEEK_END TMP_MAX
EXIT_SUCCESS EXIT_FAILURE RAND_MAX MB_CUR_MAX CHAR_BIT CHAR_MAX CHAR_MIN SCHAR_MAX
SCHAR_MIN UCHAR_MAX SHRT_MAX SHRT_MIN USHRT_MAX INT_MAX INT_MIN UINT_MAX LONG_MAX LONG_MIN
ULONG_MAX LLONG_MAX LLONG_MIN ULLONG_MAX MB_LEN_MAX SIZE_MAX PTRDIFF_MAX PTRDIFF_MIN
SIG_ATOMIC_MAX SIG_ATOMIC_MIN WCHAR_MAX WCHAR_MIN WINT_MAX WINT_MIN FLT_MAX FLT_MIN
DBL_MAX DBL_MIN FLT_EPSILON DBL_EPSILON HUGE_VAL HUGE_VALF INFINITY NAN EDOM ERANGE EILSEQ
assert bool true false jmp_buf va_list va_start va_arg va_end va_copy setjmp longjmp
signal raise abort exit atexit malloc calloc realloc free main printf fprintf sprintf
snprintf scanf sscanf fscanf puts putchar getchar fputs fgets fopen fclose fread fwrite
fflush memcpy memmove memset memcmp memchr strlen strcpy strncpy strcat strcmp strncmp
strchr strrchr strstr strtok atoi atol atof strtol strtoul strtod abs labs div rand srand
qsort bsearch time clock difftime tolower toupper isalpha isdigit isspace sin cos tan exp
log pow sqrt floor ceil fabs round lround fmin fmax min max int8_t int16_t int32_t int64_t
uint8_t uint16_t uint32_t uint64_t intptr_t uintptr_t intmax_t uintmax_t float_t double_t
complex imaginary I noreturn static_assert unreachable std
""")

# prefixes that stay reserved whatever follows: fixed by a "v" in front
_PREFIX_PATTERNS = (
    re.compile(r"^__"),     # implementation
    re.compile(r"^_[A-Z]"),  # implementation
)
# whole-name patterns: fixed by a trailing "_"
_NAME_PATTERNS = (
    re.compile(r"_t$"),                               # POSIX types
    re.compile(r"^U?INT\w*_(MAX|MIN|C|WIDTH)$"),      # stdint.h limits / constant macros
)

RESERVED = C_KEYWORDS | CPP_KEYWORDS | STD_NAMES


def is_reserved(name: str) -> bool:
    """True if ``name`` is a keyword, a standard-library name or in a reserved pattern."""
    return (name in RESERVED or any(p.search(name) for p in _PREFIX_PATTERNS)
            or any(p.search(name) for p in _NAME_PATTERNS))


def reserved_safe(name: str) -> str:
    """``name`` (a syntactically valid identifier) made non-reserved: ``v`` in front of a
    reserved prefix (``__x`` -> ``v__x``), ``_`` after a reserved name (``NULL`` ->
    ``NULL_``, ``size_t`` -> ``size_t_``). Idempotent."""
    if any(p.search(name) for p in _PREFIX_PATTERNS):
        name = "v" + name
    if name in RESERVED or any(p.search(name) for p in _NAME_PATTERNS):
        name += "_"
    return name
