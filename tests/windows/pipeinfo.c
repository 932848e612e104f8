/* Test helper for tests/windows/run, built with mingw and run under Wine.
 *
 *   pipeinfo dacl PIPE     the pipe's owner and DACL as SDDL (O:...D:...)
 *   pipeinfo whoami        this process's token user SID
 *   pipeinfo garbage PIPE  sends bytes that are no message, prints how
 *                          many bytes came back and whether the pipe closed
 *   pipeinfo squat PIPE    listens on PIPE first, as another user could,
 *                          takes one client's first bytes, impersonates
 *                          it and prints the impersonation level it got
 *                          ("identification" is all a client may allow)
 */
#include <windows.h>
#include <aclapi.h>
#include <sddl.h>
#include <stdio.h>
#include <wchar.h>

static HANDLE open_pipe(const wchar_t *name, DWORD access) {
    for (int i = 0; i < 50; i++) {
        HANDLE h = CreateFileW(name, access, 0, NULL, OPEN_EXISTING, 0, NULL);
        if (h != INVALID_HANDLE_VALUE) return h;
        if (GetLastError() != ERROR_PIPE_BUSY) break;
        WaitNamedPipeW(name, 100);
    }
    fwprintf(stderr, L"cannot open %ls: error %lu\n", name, GetLastError());
    exit(2);
}

static int dacl(const wchar_t *name) {
    HANDLE h = open_pipe(name, READ_CONTROL);
    PSECURITY_DESCRIPTOR sd = NULL;
    DWORD err = GetSecurityInfo(h, SE_KERNEL_OBJECT,
                                OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION,
                                NULL, NULL, NULL, NULL, &sd);
    if (err != ERROR_SUCCESS) {
        fprintf(stderr, "GetSecurityInfo: error %lu\n", err);
        return 2;
    }
    LPWSTR text = NULL;
    if (!ConvertSecurityDescriptorToStringSecurityDescriptorW(
            sd, SDDL_REVISION_1, OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION,
            &text, NULL)) {
        fprintf(stderr, "ConvertSecurityDescriptor: error %lu\n", GetLastError());
        return 2;
    }
    wprintf(L"%ls\n", text);
    LocalFree(text);
    LocalFree(sd);
    CloseHandle(h);
    return 0;
}

static int whoami(void) {
    HANDLE token;
    if (!OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &token)) return 2;
    BYTE buf[256];
    DWORD len;
    if (!GetTokenInformation(token, TokenUser, buf, sizeof buf, &len)) return 2;
    LPWSTR text = NULL;
    if (!ConvertSidToStringSidW(((TOKEN_USER *)buf)->User.Sid, &text)) return 2;
    wprintf(L"%ls\n", text);
    LocalFree(text);
    return 0;
}

static int garbage(const wchar_t *name) {
    HANDLE h = open_pipe(name, GENERIC_READ | GENERIC_WRITE);
    /* A length prefix of 4 GB, then noise. */
    const char junk[] = "\xff\xff\xff\xff garbage \x00\x01\x02";
    DWORD n;
    if (!WriteFile(h, junk, sizeof junk - 1, &n, NULL)) {
        fprintf(stderr, "write: error %lu\n", GetLastError());
        return 2;
    }
    char answer[4096];
    DWORD total = 0;
    while (total < sizeof answer && ReadFile(h, answer + total, sizeof answer - total, &n, NULL) && n > 0)
        total += n;
    printf("answered %lu bytes, then closed\n", (unsigned long)total);
    CloseHandle(h);
    return 0;
}

static int squat(const wchar_t *name) {
    HANDLE pipe = CreateNamedPipeW(name, PIPE_ACCESS_DUPLEX | FILE_FLAG_FIRST_PIPE_INSTANCE,
                                   PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT, 1, 4096, 4096,
                                   0, NULL);
    if (pipe == INVALID_HANDLE_VALUE) {
        fprintf(stderr, "CreateNamedPipe: error %lu\n", GetLastError());
        return 2;
    }
    printf("listening\n");
    fflush(stdout);
    if (!ConnectNamedPipe(pipe, NULL) && GetLastError() != ERROR_PIPE_CONNECTED) {
        fprintf(stderr, "ConnectNamedPipe: error %lu\n", GetLastError());
        return 2;
    }
    char buf[4];
    DWORD n;
    ReadFile(pipe, buf, sizeof buf, &n, NULL);
    if (!ImpersonateNamedPipeClient(pipe)) {
        printf("impersonation refused: error %lu\n", GetLastError());
        return 0;
    }
    HANDLE token;
    if (!OpenThreadToken(GetCurrentThread(), TOKEN_QUERY, TRUE, &token)) {
        printf("impersonation gave no token: error %lu\n", GetLastError());
        RevertToSelf();
        return 0;
    }
    SECURITY_IMPERSONATION_LEVEL level;
    DWORD len;
    if (!GetTokenInformation(token, TokenImpersonationLevel, &level, sizeof level, &len)) {
        printf("impersonation level unknown: error %lu\n", GetLastError());
        return 0;
    }
    const char *names[] = {"anonymous", "identification", "impersonation", "delegation"};
    printf("impersonation level: %s\n", level <= 3 ? names[level] : "?");
    RevertToSelf();
    CloseHandle(token);
    CloseHandle(pipe);
    return 0;
}

int wmain(int argc, wchar_t **argv) {
    if (argc == 2 && !wcscmp(argv[1], L"whoami")) return whoami();
    if (argc == 3 && !wcscmp(argv[1], L"dacl")) return dacl(argv[2]);
    if (argc == 3 && !wcscmp(argv[1], L"garbage")) return garbage(argv[2]);
    if (argc == 3 && !wcscmp(argv[1], L"squat")) return squat(argv[2]);
    fprintf(stderr, "usage: pipeinfo dacl PIPE | whoami | garbage PIPE | squat PIPE\n");
    return 2;
}
