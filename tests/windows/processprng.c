/* Wine 8 lacks bcryptprimitives.dll's ProcessPrng, which Rust's standard
 * library imports on Windows. This stand-in, built with mingw and put in
 * the Wine prefix's system32 by tests/windows/run, fills the buffer with
 * RtlGenRandom (SystemFunction036). Only for running the Windows binaries
 * under Wine in tests; never shipped. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x40000000 ? 0x40000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
