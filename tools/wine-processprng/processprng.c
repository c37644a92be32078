/*
 * A stand-in for Windows' bcryptprimitives.dll, exporting only ProcessPrng.
 *
 * Why: Rust 1.78+ std on Windows gets its random bytes (HashMap seeds) from
 * ProcessPrng in bcryptprimitives.dll, which is imported at load time. Wine 8.0
 * ships no bcryptprimitives.dll, so every Rust test binary fails to start under
 * it. `cargo xtask setup` builds this file with x86_64-w64-mingw32-gcc into the
 * wine prefix's system32, used only for running tests under wine.
 *
 * ProcessPrng is documented as BOOL ProcessPrng(PBYTE pbData, SIZE_T cbData)
 * and always returns TRUE. RtlGenRandom (advapi32 SystemFunction036), which
 * wine implements, fills at most a ULONG's worth of bytes per call, so larger
 * requests are split.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk)) {
            /* The real ProcessPrng never fails; aborting beats returning
               predictable bytes. */
            ExitProcess(0xC0000001u);
        }
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}

BOOL WINAPI DllMain(HINSTANCE inst, DWORD reason, LPVOID reserved)
{
    (void)inst;
    (void)reason;
    (void)reserved;
    return TRUE;
}
